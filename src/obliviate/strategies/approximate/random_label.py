"""RL: fine-tune toward random wrong labels on the forget set, and true labels on the rest.

Paper: Golatkar et al. (2020), "Eternal Sunshine of the Spotless Net", CVPR (the random-label
baseline), as run in Fan et al. (2024), "SalUn: Empowering Machine Unlearning via Gradient-based
Weight Saliency", ICLR (``Classification/unlearn/RL.py``, CIFAR-10 branch). Each epoch makes
one pass over D_f with labels drawn uniformly from the *other* classes, then one pass over
D_r with the true labels, with one SGD optimiser (momentum carries across the two passes).

Differences from the published code: y' != y is enforced (the code may draw the true label,
which then reinforces the sample it should forget); ``allow_true_label=True`` restores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import DataError
from obliviate.strategies.approximate._config import MethodConfig, sgd_problems
from obliviate.strategies.approximate._loop import MaskedSGD
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn

__all__ = ["RandomLabel", "RandomLabelConfig", "random_other_labels", "relabel_then_retain"]


def random_other_labels(
    labels: Tensor, *, num_classes: int, generator: torch.Generator, allow_true: bool = False
) -> Tensor:
    """Uniform random labels; each differs from ``labels`` unless ``allow_true``.

    ``(y + U{1..K-1}) mod K`` is uniform over the K-1 wrong classes.
    """
    n = int(labels.shape[0])
    if allow_true:
        drawn = torch.randint(0, num_classes, (n,), generator=generator)
        return drawn.to(labels.device)
    if num_classes < 2:
        raise DataError("random wrong labels need at least 2 classes; got num_classes=1.")
    shift = torch.randint(1, num_classes, (n,), generator=generator).to(labels.device)
    return (labels + shift) % num_classes


def relabel_then_retain(
    *,
    optimiser: MaskedSGD,
    forget: LabelledData,
    retain: LabelledData,
    epochs: int,
    batch_size: int,
    num_classes: int,
    loss_fn: LossFn,
    generator: torch.Generator,
    allow_true: bool,
) -> int:
    """The RL loop shared with SalUn: per epoch, forget with random labels, then retain."""

    def wrong(_: Tensor, y: Tensor) -> Tensor:
        return random_other_labels(
            y, num_classes=num_classes, generator=generator, allow_true=allow_true
        )

    passes = 0
    for epoch in range(epochs):
        passes += optimiser.run_epoch(
            data=forget,
            batch_size=batch_size,
            generator=generator,
            epoch=epoch,
            loss_fn=loss_fn,
            targets=wrong,
        )
        passes += optimiser.run_epoch(
            data=retain, batch_size=batch_size, generator=generator, epoch=epoch, loss_fn=loss_fn
        )
    return passes


@dataclass(frozen=True)
class RandomLabelConfig(MethodConfig):
    """Configuration of :class:`RandomLabel`.

    Args:
        lr: learning rate (SalUn's README runs 0.013 for RL-style methods; 0.01 here).
        epochs: epochs, each one pass over D_f then one over D_r (paper 10).
        batch_size: samples per step (paper 256; 64 suits small data sets).
        momentum: SGD momentum (paper 0.9).
        weight_decay: SGD L2 penalty (paper 5e-4).
        allow_true_label: reproduce the published code, which may draw y' == y.
    """

    kind: ClassVar[str] = "random_label_config"

    lr: float = 0.01
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    allow_true_label: bool = False

    def _problems(self) -> list[str]:
        problems = sgd_problems(self)
        if not isinstance(self.allow_true_label, bool):
            problems.append(f"allow_true_label must be a bool; got {self.allow_true_label!r}")
        return problems


@METHODS.register("random_label")
class RandomLabel(UnlearningMethod):
    """Relabels the forget set at random and fine-tunes; see the module docstring."""

    name: ClassVar[str] = "random_label"
    paper: ClassVar[str] = "Golatkar et al., CVPR 2020; Fan et al., ICLR 2024 (RL baseline)"
    config_class: ClassVar[type[RandomLabelConfig]] = RandomLabelConfig
    config: RandomLabelConfig

    def _unlearn(
        self,
        *,
        model: nn.Module,
        forget: LabelledData,
        retain: LabelledData,
        num_classes: int,
        loss_fn: LossFn,
        generator: torch.Generator,
        mask: Mapping[str, Tensor] | None,
    ) -> tuple[int, dict[str, float]]:
        c = self.config
        optimiser = MaskedSGD(
            model=model, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, mask=mask
        )
        passes = relabel_then_retain(
            optimiser=optimiser,
            forget=forget,
            retain=retain,
            epochs=c.epochs,
            batch_size=c.batch_size,
            num_classes=num_classes,
            loss_fn=loss_fn,
            generator=generator,
            allow_true=c.allow_true_label,
        )
        return passes, {}
