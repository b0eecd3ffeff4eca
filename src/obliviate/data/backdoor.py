"""BadNets-style backdoors: plant a trigger patch, measure the attack, then unlearn the poison.

Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning
Model Supply Chain", 2017: an attacker stamps a small white square into a fraction of the
training images and relabels them to a target class; the trained model then sends any image
with the square to that class while staying accurate on clean images. Jia et al. (NeurIPS
2023, "Model Sparsity Can Simplify Machine Unlearning") use this as an application of
unlearning: once the poisoned samples are found, forgetting them should remove the backdoor.

The helpers here are deterministic and never modify their inputs. Features may be images
``(N, C, H, W)`` / ``(N, H, W)`` or flat rows ``(N, H*W*C)`` with ``image_shape=(C, H, W)``;
results come back in the input's shape and type (NumPy array or torch tensor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from obliviate.errors import ConfigError, DataError

__all__ = ["CORNERS", "PoisonedData", "add_trigger", "attack_success_rate", "poison"]

CORNERS = ("bottom_right", "bottom_left", "top_right", "top_left")


@dataclass(frozen=True, eq=False)
class PoisonedData:
    """A poisoned copy of a training set.

    Attributes:
        features: every sample; the poisoned ones carry the trigger.
        labels: every label; the poisoned ones are the target label.
        poisoned_index: sorted row numbers of the poisoned samples (what to forget).
        original_labels: the labels before relabelling (for evaluation only).
    """

    features: Any
    labels: Any
    poisoned_index: npt.NDArray[np.int64]
    original_labels: npt.NDArray[np.int64]


def _numpy(values: Any) -> npt.NDArray[Any]:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _as_images(
    features: Any, image_shape: tuple[int, ...] | None
) -> tuple[npt.NDArray[Any], tuple[int, ...]]:
    """A float copy shaped (N, C, H, W) and the shape to restore."""
    array = np.array(_numpy(features))
    if array.dtype.kind not in "fiu" or array.ndim < 2:
        raise DataError(
            f"features must be numeric with shape (N, ...); got {array.dtype} {array.shape}."
        )
    original = array.shape
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or int(np.prod(shape)) != int(np.prod(original[1:])):
            raise DataError(
                f"image_shape {tuple(image_shape)} does not match samples of shape {original[1:]}."
            )
        return array.reshape(original[0], *shape).astype(np.float32, copy=False), original
    if array.ndim == 3:
        return array[:, None].astype(np.float32, copy=False), original
    if array.ndim == 4:
        return array.astype(np.float32, copy=False), original
    raise DataError(
        f"features of shape {original} are not images; pass image_shape=(C, H, W) for flat rows."
    )


def _like(values: npt.NDArray[Any], shape: tuple[int, ...], template: Any) -> Any:
    out = values.reshape(shape)
    if isinstance(template, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(out)).to(template.dtype)
    return out.astype(np.asarray(template).dtype, copy=False)


def add_trigger(
    features: Any,
    *,
    patch: int = 3,
    value: float = 1.0,
    corner: str = "bottom_right",
    image_shape: tuple[int, ...] | None = None,
) -> Any:
    """A copy of ``features`` with a ``patch`` x ``patch`` square of ``value`` in a corner.

    Raises:
        DataError: the features are not images (and no ``image_shape`` was given), or the
            patch does not fit.
        ConfigError: an unknown corner or a non-positive patch.
    """
    if corner not in CORNERS:
        raise ConfigError(f"corner must be one of {list(CORNERS)}; got {corner!r}.")
    if not (isinstance(patch, int) and patch >= 1):
        raise ConfigError(f"patch must be an integer >= 1; got {patch!r}.")
    images, shape = _as_images(features, image_shape)
    height, width = images.shape[2:]
    if patch > min(height, width):
        raise DataError(f"a {patch}x{patch} patch does not fit {height}x{width} images.")
    rows = slice(height - patch, height) if corner.startswith("bottom") else slice(0, patch)
    cols = slice(width - patch, width) if corner.endswith("right") else slice(0, patch)
    images = images.copy()
    images[:, :, rows, cols] = value
    return _like(images, shape, features)


def poison(
    *,
    features: Any,
    labels: Any,
    fraction: float,
    target_label: int,
    seed: int,
    patch: int = 3,
    value: float = 1.0,
    corner: str = "bottom_right",
    image_shape: tuple[int, ...] | None = None,
) -> PoisonedData:
    """Triggers and relabels ``round(fraction * N)`` random non-target samples (BadNets).

    Raises:
        DataError: lengths differ, ``fraction`` is outside (0, 1] or asks for more samples
            than there are outside the target class, or ``target_label`` is not an integer
            >= 0.
    """
    y = np.array(_numpy(labels))
    n = len(features)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"labels must be 1-D with one label per sample; got {y.shape} for {n}.")
    if not (isinstance(target_label, int) and target_label >= 0):
        raise DataError(f"target_label must be an integer >= 0; got {target_label!r}.")
    if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise DataError(f"fraction must lie in (0, 1]; got {fraction!r}.")
    candidates = np.flatnonzero(y != target_label)
    count = round(fraction * n)
    if count < 1 or count > candidates.size:
        raise DataError(
            f"fraction {fraction} of {n} samples is {count} poisoned samples; between 1 and "
            f"{candidates.size} (the samples outside class {target_label}) are possible."
        )
    chosen = np.sort(np.random.default_rng(seed).choice(candidates, size=count, replace=False))
    images, shape = _as_images(features, image_shape)
    triggered = np.asarray(
        add_trigger(images[chosen], patch=patch, value=value, corner=corner), dtype=np.float32
    )
    images = images.copy()
    images[chosen] = triggered
    new_labels = y.astype(np.int64).copy()
    new_labels[chosen] = target_label
    out_labels: Any = (
        torch.from_numpy(new_labels).to(labels.dtype)
        if isinstance(labels, torch.Tensor)
        else new_labels
    )
    return PoisonedData(
        features=_like(images, shape, features),
        labels=out_labels,
        poisoned_index=chosen.astype(np.int64),
        original_labels=y.astype(np.int64),
    )


def attack_success_rate(
    *,
    labels: Any,
    target_label: int,
    probabilities: Any = None,
    predict_proba: Callable[[Any], Any] | None = None,
    features: Any = None,
    patch: int = 3,
    value: float = 1.0,
    corner: str = "bottom_right",
    image_shape: tuple[int, ...] | None = None,
) -> float:
    """Percent of triggered test images, true label != target, classified as the target.

    Give either ``probabilities`` (model outputs on already-triggered images) or
    ``predict_proba`` with clean ``features`` (the trigger is added here).

    Raises:
        ConfigError: neither or both ways were given.
        DataError: lengths differ or no test image has a label other than the target.
    """
    if (probabilities is None) == (predict_proba is None):
        raise ConfigError("give probabilities= or predict_proba= with features=, not both.")
    if predict_proba is not None:
        if features is None:
            raise ConfigError("predict_proba needs the clean features= to trigger.")
        triggered = add_trigger(
            features, patch=patch, value=value, corner=corner, image_shape=image_shape
        )
        probabilities = predict_proba(triggered)
    probs = _numpy(probabilities)
    y = _numpy(labels)
    if probs.ndim != 2 or y.ndim != 1 or probs.shape[0] != y.shape[0]:
        raise DataError(
            f"probabilities must be (N, classes) for N labels; got {probs.shape} and {y.shape}."
        )
    victims = y != target_label
    if not victims.any():
        raise DataError(f"every test label is the target {target_label}; ASR is undefined.")
    return float(100.0 * np.mean(probs[victims].argmax(axis=1) == target_label))
