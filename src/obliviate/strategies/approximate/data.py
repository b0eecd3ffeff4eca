"""LabelledData: the validated forget and retain sets an approximate method works on.

At this level obliviate knows no sample ids: the caller (a strategy or a benchmark) has
already split its training data into what to forget and what to keep, as tensors. Everything
is checked once here so methods can trust their input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.nn import functional

from obliviate.errors import DataError

if TYPE_CHECKING:
    from obliviate.data.sample_set import SampleSet

__all__ = ["LabelledData", "LossFn", "all_finite", "default_loss"]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, labels)`` -> the mean loss over the batch (a scalar tensor)."""


def all_finite(values: Tensor) -> bool:
    """Whether every entry of a floating-point tensor is finite, without a full-size mask.

    A NaN or infinity anywhere makes the sum NaN or infinite, so a finite sum proves every
    entry finite; only a non-finite sum (a real NaN, or finite values whose sum overflows)
    needs the entry-by-entry check. The sum is a single pass with no allocation, where
    ``isfinite(x).all()`` builds a boolean copy: 0.37 s against 0.01 s for EU-k's cached
    features of 45,000 Fashion-MNIST images on one core. Every finiteness check of this
    package (data, parameters, solver iterates) goes through here.
    """
    if bool(torch.isfinite(values.sum())):
        return True
    return bool(torch.isfinite(values).all())


def default_loss(outputs: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy: the loss every published method on classifiers uses."""
    return functional.cross_entropy(outputs, labels)


@dataclass(frozen=True, eq=False)
class LabelledData:
    """Features and integer labels, checked: 2+-D float features, 1-D int64 labels, finite.

    Args:
        features: ``(n, *sample_shape)`` floating-point tensor; ``n`` may be 0.
        labels: ``(n,)`` int64 tensor of class indices.

    Raises:
        DataError: a type, shape, dtype or length is wrong, or a feature is NaN/infinite.
    """

    features: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        x, y = self.features, self.labels
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise DataError(
                "features and labels must be torch tensors; "
                f"got {type(x).__name__} and {type(y).__name__}."
            )
        if x.dim() < 2 or not x.is_floating_point():
            raise DataError(
                "features must be a floating-point tensor of shape (n, *sample_shape); "
                f"got dtype {x.dtype} and shape {tuple(x.shape)}."
            )
        if y.dim() != 1 or y.dtype != torch.int64:
            raise DataError(
                f"labels must be a 1-D int64 tensor; got dtype {y.dtype}, shape {tuple(y.shape)}."
            )
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"features have {x.shape[0]} rows but labels have {y.shape[0]}; "
                "they must describe the same samples."
            )
        if x.numel() and not all_finite(x):
            bad = int((~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=1).sum())
            raise DataError(f"{bad} sample(s) have NaN or infinite features; remove or fix them.")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's feature shape (without the batch dimension)."""
        return tuple(self.features.shape[1:])

    @classmethod
    def from_arrays(cls, *, features: npt.ArrayLike, labels: npt.ArrayLike) -> LabelledData:
        """From NumPy-like arrays (features become float32 unless already floating)."""
        x = torch.as_tensor(np.asarray(features))
        if not x.is_floating_point():
            x = x.float()
        return cls(features=x, labels=torch.as_tensor(np.asarray(labels, dtype=np.int64)))

    @classmethod
    def from_sample_set(cls, samples: SampleSet) -> LabelledData:
        """The features and labels of a :class:`~obliviate.data.SampleSet` (copied)."""
        return cls(
            features=torch.from_numpy(np.array(samples.features, dtype=np.float32)),
            labels=torch.from_numpy(np.array(samples.labels, dtype=np.int64)),
        )

    def subset(self, rows: Tensor) -> LabelledData:
        """The samples at ``rows`` (an index tensor), as new tensors."""
        return LabelledData(features=self.features[rows], labels=self.labels[rows])
