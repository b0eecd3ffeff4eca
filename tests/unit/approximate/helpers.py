"""A tiny trained classifier that memorised a mislabelled forget set, and fast configs.

The forget samples carry flipped labels, so a model retrained without them predicts their
*true* class: forgetting must lower the accuracy on the forget set (against its given
labels), which makes the direction of every method testable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from obliviate.models import build_model
from obliviate.strategies.approximate import (
    BoundaryShrinkConfig,
    EUkConfig,
    FineTuneConfig,
    FisherForgettingConfig,
    GradientAscentConfig,
    InfluenceUnlearningConfig,
    L1SparseConfig,
    LabelledData,
    NegGradEUkConfig,
    RandomLabelConfig,
    RetrainReferenceConfig,
    SalUnConfig,
    masked_sgd,
)
from obliviate.testing import make_blobs

CLASSES = 3
FEATURES = 32
FORGET = 12

FAST: dict[str, Any] = {
    "retrain": RetrainReferenceConfig(epochs=3),
    "finetune": FineTuneConfig(epochs=2),
    "gradient_ascent": GradientAscentConfig(epochs=2),
    "random_label": RandomLabelConfig(epochs=2),
    "fisher": FisherForgettingConfig(),
    "influence": InfluenceUnlearningConfig(cg_max_iter=20, damping=1.0),
    "l1_sparse": L1SparseConfig(epochs=2),
    "salun": SalUnConfig(epochs=2),
    "boundary_shrink": BoundaryShrinkConfig(epochs=2),
    "eu_k": EUkConfig(epochs=2),
    "neggrad_eu_k": NegGradEUkConfig(layers=1, head_epochs=2),
}


@dataclass(frozen=True)
class Setup:
    """A trained model with its forget and retain sets."""

    model: nn.Module
    forget: LabelledData
    retain: LabelledData


@lru_cache(maxsize=1)
def _trained() -> Setup:
    samples = make_blobs(n=150, classes=CLASSES, features=FEATURES, seed=3)
    data = LabelledData.from_sample_set(samples)
    labels = data.labels.clone()
    labels[:FORGET] = (labels[:FORGET] + 1) % CLASSES
    data = LabelledData(features=data.features, labels=labels)
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(FEATURES,), num_classes=CLASSES, hidden=(32,))
    masked_sgd(
        model=model,
        data=data,
        epochs=60,
        lr=0.05,
        batch_size=32,
        generator=torch.Generator().manual_seed(0),
        weight_decay=0.0,
    )
    model.eval()
    rows = torch.arange(len(data))
    return Setup(model=model, forget=data.subset(rows[:FORGET]), retain=data.subset(rows[FORGET:]))


def trained() -> Setup:
    """A fresh copy of the memorised setup (cached training, copied model and tensors)."""
    base = _trained()
    return Setup(
        model=copy.deepcopy(base.model),
        forget=LabelledData(
            features=base.forget.features.clone(), labels=base.forget.labels.clone()
        ),
        retain=LabelledData(
            features=base.retain.features.clone(), labels=base.retain.labels.clone()
        ),
    )


def accuracy(model: nn.Module, data: LabelledData) -> float:
    """Fraction of ``data`` classified as labelled."""
    model.eval()
    with torch.no_grad():
        return float((model(data.features).argmax(dim=1) == data.labels).float().mean())


def half_mask(model: nn.Module) -> dict[str, torch.Tensor]:
    """A seeded pruning mask that keeps about half of every parameter's entries."""
    generator = torch.Generator().manual_seed(7)
    return {
        name: (torch.rand(p.shape, generator=generator) < 0.5).to(p.dtype)
        for name, p in model.named_parameters()
    }
