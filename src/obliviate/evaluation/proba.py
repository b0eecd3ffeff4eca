"""Probability functions: how every model is seen by the evaluation code.

A :data:`ProbaFn` maps a float32 feature array to (N, C) class probabilities. Exact
strategies, single networks and cached ensembles are all reduced to one, so every metric and
attack has a single code path.

A SISA model with ``aggregation="vote"`` returns *vote shares* (multiples of 1/S), not
probabilities: confidence-based attacks then see only S + 1 distinct confidence levels and
become coarser (weaker) than on a softmax model. ``mean_prob`` aggregation avoids that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from obliviate.evaluation.metrics import predict_proba

__all__ = ["ProbaFn", "from_module", "from_strategy"]

ProbaFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def from_module(module: nn.Module, *, batch_size: int = 512) -> ProbaFn:
    """A :data:`ProbaFn` for a classifier returning logits (eval mode, no grad, softmax)."""

    def proba(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return predict_proba(module, features, batch_size=batch_size)

    return proba


def from_strategy(strategy: Any, *, version: int | None = None) -> ProbaFn:
    """A :data:`ProbaFn` over ``Strategy.predict`` (active version unless ``version``).

    The probabilities are whatever the strategy aggregates: vote shares for SISA's vote
    aggregation (coarser confidence for the attacks), mean probabilities otherwise.
    """

    def proba(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        prediction = strategy.predict(features, version=version)
        return np.asarray(prediction.probabilities, dtype=np.float32)

    return proba
