"""Deletion-budget accounting: cutting sequences back, the served prefix, what is left.

Pure functions over sequence lengths, shared by the strategy's request path and by the
benchmark's simulation, so the simulated capacity is the capacity of the real code.

A shard's state is one length per sequence: sequence ``b`` still serves its first
``lengths[b]`` slices. A deletion in slice ``s`` cuts every sequence that holds ``s`` at
position ``p`` (0-based) back to ``min(length, p)``; a sequence of length 0 is unusable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from obliviate.strategies.exact.s3t.sequences import SliceSequence

__all__ = [
    "DeletionBudget",
    "ShardBudget",
    "cut",
    "served",
    "shard_budget",
    "simulate_absorbed",
]


def cut(
    lengths: Sequence[int], sequences: Sequence[SliceSequence], dirty: Iterable[int]
) -> list[int]:
    """Lengths after deleting from the slices in ``dirty`` (no training, just truncation)."""
    hit = set(dirty)
    out = []
    for length, sequence in zip(lengths, sequences, strict=True):
        first = next((p for p, s in enumerate(sequence) if s in hit), len(sequence))
        out.append(min(length, first))
    return out


def served(lengths: Sequence[int]) -> tuple[int, int]:
    """The sequence serving the shard and its length: the longest, lowest index on ties."""
    best = max(range(len(lengths)), key=lambda b: (lengths[b], -b))
    return best, lengths[best]


@dataclass(frozen=True)
class ShardBudget:
    """What one shard can still absorb.

    Attributes:
        served_slices: slices in the prefix that serves (0: the shard is excluded).
        live_sequences: sequences with a usable (non-empty) prefix.
        worst_case_remaining: deletions that exhaust the shard when each hits a distinct
            leading slice of a live sequence (an adversary's count; a uniform stream takes
            longer on average).
    """

    served_slices: int
    live_sequences: int
    worst_case_remaining: int


def shard_budget(lengths: Sequence[int], sequences: Sequence[SliceSequence]) -> ShardBudget:
    """The remaining budget of a shard in state ``lengths``."""
    live = [seq for length, seq in zip(lengths, sequences, strict=True) if length > 0]
    return ShardBudget(
        served_slices=served(lengths)[1],
        live_sequences=len(live),
        worst_case_remaining=len({seq[0] for seq in live}),
    )


@dataclass(frozen=True)
class DeletionBudget:
    """The remaining deletion budget of a model version.

    Attributes:
        shards: per shard component, its :class:`ShardBudget`.
        shards_exhausted: shards with no usable prefix (excluded, or awaiting a retrain).
        worst_case_remaining: adversarial deletions until every shard is exhausted (the sum
            over shards); the model keeps serving until then, without training.
        served_fraction: served slices over all slices (1.0 right after fitting).
    """

    shards: dict[str, ShardBudget]
    shards_exhausted: int
    worst_case_remaining: int
    served_fraction: float


def simulate_absorbed(
    *,
    shards: int,
    sequences: Sequence[SliceSequence],
    runs: int,
    seed: int,
    priors: Sequence[float] | None = None,
    until: str = "all",
) -> npt.NDArray[np.int64]:
    """Deletions absorbed without training, per simulated run.

    Each deletion hits a shard uniformly at random and a slice drawn from ``priors``
    (uniform by default), i.e. a uniform sample when slices are equal-sized. A deletion is
    absorbed when, after it, the model still serves: with ``until="all"`` some shard has a
    usable prefix (S3T's rule: retrain only once every shard is exhausted); with
    ``until="first"`` every shard does (a per-shard retrain policy's first retrain).

    Returns:
        int64 counts of absorbed deletions, one per run.
    """
    if until not in ("all", "first"):
        raise ValueError(f"until must be 'all' or 'first'; got {until!r}.")
    slices = len(sequences[0])
    p = np.full(slices, 1.0 / slices) if priors is None else np.asarray(priors, np.float64)
    p = p / p.sum()
    # position[b, s]: where slice s sits in sequence b.
    position = np.empty((len(sequences), slices), dtype=np.int64)
    for b, seq in enumerate(sequences):
        position[b, list(seq)] = np.arange(slices)
    rng = np.random.default_rng(seed)
    counts = np.empty(runs, dtype=np.int64)
    for run in range(runs):
        lengths = np.full((shards, len(sequences)), slices, dtype=np.int64)
        alive = shards
        absorbed = 0
        draws: Iterator[tuple[int, int]] = iter(())
        while True:
            try:
                shard, slice_ = next(draws)
            except StopIteration:
                block = 64 * shards * slices
                draws = zip(
                    rng.integers(shards, size=block).tolist(),
                    rng.choice(slices, size=block, p=p).tolist(),
                    strict=True,
                )
                continue
            before = lengths[shard].max() > 0
            np.minimum(lengths[shard], position[:, slice_], out=lengths[shard])
            if before and lengths[shard].max() == 0:
                alive -= 1
            if alive == 0 or (until == "first" and alive < shards):
                break
            absorbed += 1
        counts[run] = absorbed
    return counts
