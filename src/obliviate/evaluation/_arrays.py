"""Validation of the (probabilities, labels) pairs every metric and attack consumes.

Metrics are computed from class probabilities, never from a model, so that exact strategies
(vote shares), approximate ones (a single network) and cached ensembles share one code path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.errors import DataError

__all__ = ["as_labels", "as_probabilities", "check_pair"]


def as_probabilities(values: Any, *, name: str) -> npt.NDArray[np.float64]:
    """Returns ``values`` as a finite (N, C) float64 array of probabilities.

    Raises:
        DataError: not two-dimensional, not finite, or outside [0, 1].
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise DataError(
            f"{name} must be an (N, C) array of class probabilities; got shape {array.shape}."
        )
    if array.size and not np.all(np.isfinite(array)):
        raise DataError(f"{name} contains NaN or infinite values; pass finite probabilities.")
    if array.size and (array.min() < -1e-6 or array.max() > 1.0 + 1e-6):
        raise DataError(
            f"{name} must hold probabilities in [0, 1]; got values in "
            f"[{array.min():.4g}, {array.max():.4g}] (did you pass logits? apply softmax)."
        )
    return np.clip(array, 0.0, 1.0)


def as_labels(values: Any, *, name: str, classes: int) -> npt.NDArray[np.int64]:
    """Returns ``values`` as a 1-D int64 array of class indices below ``classes``.

    Raises:
        DataError: not one-dimensional, not integral, or out of range.
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of class indices; got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{name} must hold integer class indices; got dtype {array.dtype}.")
    labels = array.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(
            f"{name} must lie in [0, {classes - 1}] for {classes} classes; got values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    return labels


def check_pair(
    probabilities: Any, labels: Any, *, name: str, allow_empty: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Validates a (probabilities, labels) pair and returns both as arrays.

    Raises:
        DataError: shapes disagree, values are malformed, or the pair is empty.
    """
    probs = as_probabilities(probabilities, name=f"{name} probabilities")
    labs = as_labels(labels, name=f"{name} labels", classes=probs.shape[1])
    if len(probs) != len(labs):
        raise DataError(
            f"{name}: {len(probs)} probability rows but {len(labs)} labels; "
            "they must describe the same samples."
        )
    if not allow_empty and len(labs) == 0:
        raise DataError(f"{name} is empty; at least one sample is needed.")
    return probs, labs
