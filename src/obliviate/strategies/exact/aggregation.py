"""How shard outputs become one prediction.

Aggregators take per-shard class probabilities ``(shards, n, classes)`` and per-shard
weights, and return class scores ``(n, classes)``; the prediction is their argmax (ties go
to the lowest class index, as ``argmax`` does).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from obliviate.registry import Registry

__all__ = ["AGGREGATIONS", "aggregate"]

Aggregator = Callable[[npt.NDArray[np.float32], npt.NDArray[np.float64]], npt.NDArray[np.float32]]
AGGREGATIONS: Registry[Aggregator] = Registry("aggregation")


def _one_hot_votes(probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    winners = probs.argmax(axis=2)
    votes = np.zeros_like(probs)
    np.put_along_axis(votes, winners[..., None], 1.0, axis=2)
    return votes


@AGGREGATIONS.register("vote")
def label_vote(
    probs: npt.NDArray[np.float32], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Majority vote over each shard's predicted label (SISA's default); weights ignored."""
    votes = _one_hot_votes(probs)
    return np.asarray(votes.sum(axis=0) / max(probs.shape[0], 1), dtype=np.float32)


@AGGREGATIONS.register("weighted_vote")
def weighted_vote(
    probs: npt.NDArray[np.float32], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Vote weighted by each shard's number of training samples."""
    votes = _one_hot_votes(probs)
    w = weights / weights.sum() if weights.sum() > 0 else np.full_like(weights, 1 / len(weights))
    return np.asarray(np.tensordot(w, votes, axes=1), dtype=np.float32)


@AGGREGATIONS.register("mean_prob")
def mean_probability(
    probs: npt.NDArray[np.float32], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Mean of the shards' softmax probabilities."""
    return np.asarray(probs.mean(axis=0), dtype=np.float32)


def aggregate(
    name: str, probs: npt.NDArray[np.float32], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Applies the aggregation registered as ``name``."""
    return AGGREGATIONS.get(name)(probs, weights)
