"""Which orderings of a shard's slices S3T trains: cyclic rotation or bipartite matching.

S3T (Chowdhury et al., "Towards Scalable Exact Machine Unlearning Using Parameter-Efficient
Fine-Tuning", ICLR 2025) trains B sequences per shard; a deletion in slice ``s`` cuts every
sequence back to its prefix before ``s``. The more distinct slices lead some sequence, the
longer a shard keeps a usable prefix, so both selections below make every slice lead a
sequence before any slice leads two.

A sequence is a tuple of slice indices, a permutation of ``0..L-1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from obliviate.errors import ConfigError
from obliviate.registry import Registry

__all__ = ["SELECTIONS", "SliceSequence", "cyclic", "matching", "max_sequences", "select"]

SliceSequence = tuple[int, ...]
Selector = Callable[..., list[SliceSequence]]
SELECTIONS: Registry[Selector] = Registry("sequence selection")

# The exponent of the survival score: (1 - cumulative prior)^t rewards prefixes whose slices
# are unlikely to be hit; S3T's reference uses t = 100.
_SURVIVAL_EXPONENT = 100
_FORBIDDEN = -1e12


def _rotations(items: SliceSequence) -> list[SliceSequence]:
    return [items[i:] + items[:i] for i in range(len(items))]


def _cyclic(items: SliceSequence, count: int) -> list[SliceSequence]:
    rotations = _rotations(items)
    if count <= len(items):
        return rotations[:count]
    # More sequences than leaders: each leader gets an equal share (the first ones one more),
    # and its tail is filled recursively by rotations of the remaining slices.
    base, extra = divmod(count, len(items))
    out: list[SliceSequence] = []
    for i, rotation in enumerate(rotations):
        share = base + (1 if i < extra else 0)
        out.extend((rotation[0], *tail) for tail in _cyclic(rotation[1:], share))
    return out


def max_sequences(slices: int, selection: str) -> int:
    """The largest budget B that ``selection`` supports for ``slices`` slices."""
    return math.factorial(slices) if selection == "cyclic" else slices


@SELECTIONS.register("cyclic")
def cyclic(
    *, slices: int, budget: int, priors: Sequence[float] | None = None
) -> list[SliceSequence]:
    """Rotations of ``(0, .., L-1)``; beyond L, rotations of the tails under each leader.

    Priors are ignored: rotation gives every slice one leading sequence (B <= L) and spreads
    later sequences evenly over leaders, whatever the deletion risk.
    """
    _check(slices, budget, "cyclic")
    return _cyclic(tuple(range(slices)), budget)


@SELECTIONS.register("matching")
def matching(
    *, slices: int, budget: int, priors: Sequence[float] | None = None
) -> list[SliceSequence]:
    """Bipartite-matching selection (S3T's BMS) under per-slice deletion priors.

    L sequences are grown one position at a time; sequence ``i`` starts with slice ``i``. At
    each position a maximum-weight assignment (``scipy.optimize.linear_sum_assignment``) of
    unused slices to sequences adds ``n * (1 - P)^t`` per sequence, where ``P`` is the prior
    mass of the prefix so far, so likely-deleted slices are pushed deep. Each position holds
    every slice once (a Latin square), so every slice leads exactly one sequence. With
    B < L the B sequences with the longest expected surviving prefix are kept.
    """
    _check(slices, budget, "matching")
    p = _normalised(slices, priors)
    grown: list[list[int]] = [[i] for i in range(slices)]
    mass = p.copy()
    for position in range(2, slices + 1):
        weight = np.empty((slices, slices), dtype=np.float64)
        for i, seq in enumerate(grown):
            survive = np.clip(1.0 - (mass[i] + p), 0.0, 1.0) ** _SURVIVAL_EXPONENT
            weight[i] = position * survive
            weight[i, seq] = _FORBIDDEN
        rows, cols = linear_sum_assignment(weight, maximize=True)
        for i, s in zip(rows.tolist(), cols.tolist(), strict=True):
            if s in grown[i]:  # pragma: no cover - a regular bipartite graph has a matching
                raise ConfigError(f"matching selection found no valid slice for sequence {i}.")
            grown[i].append(s)
            mass[i] += p[s]
    # Keep the sequences with the longest expected surviving prefix under one deletion:
    # sum over n of P(first n slices untouched) = sum of (1 - prior mass of the prefix).
    expected = [float(np.sum(1.0 - np.cumsum(p[seq]))) for seq in grown]
    order = sorted(range(slices), key=lambda i: (-round(expected[i], 12), i))
    return [tuple(grown[i]) for i in order[:budget]]


def select(
    name: str, *, slices: int, budget: int, priors: Sequence[float] | None = None
) -> list[SliceSequence]:
    """The ``budget`` sequences chosen by the selection registered as ``name``."""
    return SELECTIONS.get(name)(slices=slices, budget=budget, priors=priors)


def _check(slices: int, budget: int, name: str) -> None:
    if slices < 1 or budget < 1 or budget > max_sequences(slices, name):
        raise ConfigError(
            f"{name} selection needs 1 <= budget <= {max_sequences(slices, name)} for "
            f"{slices} slices; got budget={budget}."
        )


def _normalised(slices: int, priors: Sequence[float] | None) -> np.ndarray:
    if priors is None:
        return np.full(slices, 1.0 / slices)
    p = np.asarray(priors, dtype=np.float64)
    if p.shape != (slices,) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ConfigError(
            f"deletion priors must be {slices} non-negative numbers with a positive sum; "
            f"got {list(priors)!r}."
        )
    out: np.ndarray = p / p.sum()
    return out
