"""BS: boundary shrink — relabel each forget sample with its nearest other class, fine-tune.

Paper: Chen et al. (2023), "Boundary Unlearning: Rapid Forgetting of Deep Networks via
Shifting the Decision Space", CVPR. For each forget sample, an FGSM step on the *original*
(frozen) model, x' = x + ε·sign(∇_x ℓ(f(x), y)), crosses toward the nearest decision
boundary; the neighbour label y_nb = argmax f(x') names the class on the other side. The model
is then fine-tuned on (x, y_nb) over the forget set only, shrinking the forgotten region into
its neighbours instead of scattering it at random (as RL does).

Neighbour labels are computed once, before any update (the original code attacks a frozen
copy each batch, which gives the same labels without augmentation). Difference from the
original code: when the FGSM step fails to cross (argmax f(x') == y), we take the best *other*
class at x' — the paper's "nearest but incorrect" label; ``allow_true_label=True`` keeps y.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.strategies.approximate._config import (
    MethodConfig,
    check_positive,
    sgd_problems,
)
from obliviate.strategies.approximate._loop import masked_sgd
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn

__all__ = ["BoundaryShrink", "BoundaryShrinkConfig", "neighbour_labels"]

_ATTACK_BATCH = 256


def neighbour_labels(
    *,
    model: nn.Module,
    data: LabelledData,
    loss_fn: LossFn,
    epsilon: float,
    clamp: tuple[float, float] | None = None,
    allow_true: bool = False,
) -> tuple[Tensor, float]:
    """FGSM neighbour labels of ``data`` under ``model`` (eval mode, not modified).

    Returns:
        (the labels, the fraction of samples whose FGSM step crossed the boundary).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[Tensor] = []
    crossed = 0
    for start in range(0, len(data), _ATTACK_BATCH):
        x = data.features[start : start + _ATTACK_BATCH].to(device).detach().requires_grad_(True)
        y = data.labels[start : start + _ATTACK_BATCH].to(device)
        (grad,) = torch.autograd.grad(loss_fn(model(x), y), [x])
        with torch.no_grad():
            x_adv = x + epsilon * grad.sign()
            if clamp is not None:
                x_adv = x_adv.clamp(clamp[0], clamp[1])
            logits = model(x_adv)
            label = logits.argmax(dim=1)
            crossed += int((label != y).sum())
            if not allow_true:
                others = logits.scatter(1, y[:, None], float("-inf"))
                label = torch.where(label == y, others.argmax(dim=1), label)
        out.append(label.to(data.labels.device))
    model.train(was_training)
    return torch.cat(out), crossed / len(data)


@dataclass(frozen=True)
class BoundaryShrinkConfig(MethodConfig):
    """Configuration of :class:`BoundaryShrink`.

    Args:
        epsilon: FGSM step size in input units (paper 0.1 on images in [0, 1]; scale it to
            your features' range).
        clamp: optional (low, high) valid input range for the perturbed samples.
        lr: learning rate (0.01 suits small models; tune per data set).
        epochs: passes over the forget set (paper 10).
        batch_size: samples per step (32 gives small forget sets several steps).
        momentum: SGD momentum (0.9).
        weight_decay: SGD L2 penalty (5e-4).
        allow_true_label: keep y as the target where FGSM did not cross (original code).
    """

    kind: ClassVar[str] = "boundary_shrink_config"

    epsilon: float = 0.1
    clamp: tuple[float, float] | None = None
    lr: float = 0.01
    epochs: int = 10
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    allow_true_label: bool = False

    def _problems(self) -> list[str]:
        problems = sgd_problems(self)
        check_positive(problems, "epsilon", self.epsilon)
        if self.clamp is not None and not (
            isinstance(self.clamp, tuple)
            and len(self.clamp) == 2
            and all(isinstance(v, int | float) for v in self.clamp)
            and self.clamp[0] < self.clamp[1]
        ):
            problems.append(
                f"clamp must be None or (low, high) with low < high; got {self.clamp!r}"
            )
        if not isinstance(self.allow_true_label, bool):
            problems.append(f"allow_true_label must be a bool; got {self.allow_true_label!r}")
        return problems


@METHODS.register("boundary_shrink")
class BoundaryShrink(UnlearningMethod):
    """Fine-tunes the forget set toward FGSM neighbour labels; see the module docstring."""

    name: ClassVar[str] = "boundary_shrink"
    paper: ClassVar[str] = "Chen et al., CVPR 2023 (Boundary Unlearning)"
    config_class: ClassVar[type[BoundaryShrinkConfig]] = BoundaryShrinkConfig
    config: BoundaryShrinkConfig

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
        labels, crossed = neighbour_labels(
            model=model,
            data=forget,
            loss_fn=loss_fn,
            epsilon=c.epsilon,
            clamp=c.clamp,
            allow_true=c.allow_true_label,
        )
        passes = len(forget) + masked_sgd(
            model=model,
            data=LabelledData(features=forget.features, labels=labels),
            epochs=c.epochs,
            lr=c.lr,
            batch_size=c.batch_size,
            generator=generator,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            loss_fn=loss_fn,
            mask=mask,
        )
        return passes, {"fgsm_crossed_fraction": crossed}
