"""Where each sample goes: its shard, its slice and its order key.

Every function here is deletion-stable: removing a sample does not move any other sample to
a different shard, slice or relative position. That property is what lets a forget retrain
only the affected suffix of one shard and still equal a retrain from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from obliviate._hashing import id_hash64
from obliviate.registry import Registry

__all__ = ["SHARDINGS", "Placement", "place"]


@dataclass(frozen=True)
class Placement:
    """Per-sample placement, aligned with the sample arrays it was computed from."""

    shard: npt.NDArray[np.int64]
    slice: npt.NDArray[np.int64]
    order_key: npt.NDArray[np.uint64]


Sharder = Callable[..., Placement]
SHARDINGS: Registry[Sharder] = Registry("sharding")


def _bucket(hashes: npt.NDArray[np.uint64], n: int) -> npt.NDArray[np.int64]:
    return (hashes % np.uint64(n)).astype(np.int64)


@SHARDINGS.register("uniform")
def uniform(
    *,
    sample_ids: npt.NDArray[np.str_],
    subject_ids: npt.NDArray[np.str_],
    labels: npt.NDArray[np.int64],
    shards: int,
    slices: int,
    seed: int,
) -> Placement:
    """Shard and slice drawn from a keyed hash of the sample id (uniform in expectation)."""
    return Placement(
        shard=_bucket(id_hash64(sample_ids, f"{seed}:shard"), shards),
        slice=_bucket(id_hash64(sample_ids, f"{seed}:slice"), slices),
        order_key=id_hash64(sample_ids, f"{seed}:order"),
    )


@SHARDINGS.register("by_subject")
def by_subject(
    *,
    sample_ids: npt.NDArray[np.str_],
    subject_ids: npt.NDArray[np.str_],
    labels: npt.NDArray[np.int64],
    shards: int,
    slices: int,
    seed: int,
) -> Placement:
    """All of a subject's samples in one shard *and* one slice.

    A subject's deletion then touches one shard, from one slice on. Samples without a
    subject are placed by their own id.
    """
    keys = np.where(np.char.str_len(subject_ids) > 0, np.char.add("s:", subject_ids), sample_ids)
    return Placement(
        shard=_bucket(id_hash64(keys, f"{seed}:shard"), shards),
        slice=_bucket(id_hash64(keys, f"{seed}:slice"), slices),
        order_key=id_hash64(sample_ids, f"{seed}:order"),
    )


@SHARDINGS.register("class_balanced")
def class_balanced(
    *,
    sample_ids: npt.NDArray[np.str_],
    subject_ids: npt.NDArray[np.str_],
    labels: npt.NDArray[np.int64],
    shards: int,
    slices: int,
    seed: int,
) -> Placement:
    """Each class dealt round-robin over shards in hash order, so shards get equal class mixes.

    The deal is made over every sample *registered* when the model is fitted, deleted ones
    included (the registry keeps tombstones), so a later deletion never re-deals anyone.
    """
    order_key = id_hash64(sample_ids, f"{seed}:order")
    deal_key = id_hash64(sample_ids, f"{seed}:deal")
    shard = np.empty(len(sample_ids), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranked = members[np.argsort(deal_key[members], kind="stable")]
        shard[ranked] = np.arange(len(ranked)) % shards
    return Placement(
        shard=shard,
        slice=_bucket(id_hash64(sample_ids, f"{seed}:slice"), slices),
        order_key=order_key,
    )


def place(
    name: str,
    *,
    sample_ids: npt.NDArray[np.str_],
    subject_ids: npt.NDArray[np.str_],
    labels: npt.NDArray[np.int64],
    shards: int,
    slices: int,
    seed: int,
) -> Placement:
    """Places samples with the sharding registered as ``name``."""
    return SHARDINGS.get(name)(
        sample_ids=sample_ids,
        subject_ids=subject_ids,
        labels=labels,
        shards=shards,
        slices=slices,
        seed=seed,
    )
