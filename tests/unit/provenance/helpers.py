"""Builders shared by the provenance tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from obliviate.data.sample_set import SampleSet


def make_samples(
    ids: Sequence[str],
    *,
    subjects: Sequence[str] | None = None,
    num_classes: int = 3,
    feature_shape: tuple[int, ...] = (4,),
    seed: int = 0,
) -> SampleSet:
    """A small SampleSet with the given ids, random features and cycling labels."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    return SampleSet.from_arrays(
        features=rng.standard_normal((n, *feature_shape)).astype(np.float32),
        labels=np.arange(n) % num_classes,
        sample_ids=list(ids),
        subject_ids=None if subjects is None else list(subjects),
        num_classes=num_classes,
    )


def hex64(n: int) -> str:
    """A distinct, well-formed 64-hex id for test checkpoints and lineage hashes."""
    return f"{n:064x}"
