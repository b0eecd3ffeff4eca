"""Small deterministic data and bitwise comparisons of models."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from obliviate.data.sample_set import SampleSet

__all__ = ["assert_models_equal", "make_blobs", "model_parameters"]


def make_blobs(
    *,
    n: int = 120,
    classes: int = 3,
    features: int = 6,
    subjects: int | None = None,
    seed: int = 0,
    name: str = "blobs",
    id_prefix: str = "s",
) -> SampleSet:
    """Gaussian blobs, one per class, with ids ``f"{id_prefix}{i}"``.

    With ``subjects``, sample ``i`` belongs to subject ``f"u{i % subjects}"``.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 3.0, size=(classes, features))
    labels = rng.integers(0, classes, size=n)
    x = centers[labels] + rng.normal(0.0, 1.0, size=(n, features))
    subject_ids = None if subjects is None else [f"u{i % subjects}" for i in range(n)]
    return SampleSet.from_arrays(
        features=x.astype(np.float32),
        labels=labels,
        sample_ids=[f"{id_prefix}{i}" for i in range(n)],
        subject_ids=subject_ids,
        num_classes=classes,
        name=name,
    )


def model_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers of ``model`` by name (detached)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_models_equal(left: nn.Module, right: nn.Module) -> None:
    """Raises AssertionError unless every parameter and buffer is bitwise equal."""
    a, b = model_parameters(left), model_parameters(right)
    if a.keys() != b.keys():
        raise AssertionError(f"different parameter names: {sorted(a)} vs {sorted(b)}")
    for key in a:
        if a[key].dtype != b[key].dtype or not torch.equal(a[key], b[key]):
            raise AssertionError(f"parameter {key} differs")
