"""GA: gradient ascent on the forget set (a.k.a. NegGrad).

Paper: Thudi et al. (2022), "Unrolling SGD: Understanding Factors Influencing Machine
Unlearning", EuroS&P; as configured in Jia et al. (2023), "Model Sparsity Can Simplify Machine
Unlearning", NeurIPS (``unlearn/GA.py``): SGD(momentum 0.9, weight decay 5e-4) maximising the
cross-entropy on D_f for 5 epochs.

GA never looks at the retain set, so it trades utility for forgetting and diverges if run too
long or too fast: the loss it maximises is unbounded. One deviation from the paper's code:
each step's gradient is clipped to a global L2 norm (``max_grad_norm``, default 5), because
once the forget loss starts to climb, unclipped steps grow with it and overflow the logits
within an epoch or two (NaN in 5 of 8 settings of our Jia et al. benchmark). A loss that
still becomes NaN or infinite is a :class:`~obliviate.errors.TrainingError`, never a
returned model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.strategies.approximate._config import MethodConfig, check_positive, sgd_problems
from obliviate.strategies.approximate._loop import masked_sgd
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn

__all__ = ["GradientAscent", "GradientAscentConfig"]


@dataclass(frozen=True)
class GradientAscentConfig(MethodConfig):
    """Configuration of :class:`GradientAscent`.

    Args:
        lr: learning rate. The paper's README uses 1e-4 with batch 256 on 4,500 forget images;
            the SalUn maintainers advise 5e-4 to 1e-3 there. A small forget set gives only a
            step or two per epoch, so the default here is 1e-2; tune it.
        epochs: passes over the forget set (paper 5).
        batch_size: samples per step (paper 256; 32 gives small forget sets several steps).
        momentum: SGD momentum (paper 0.9).
        weight_decay: SGD L2 penalty (paper 5e-4; it still applies during ascent).
        max_grad_norm: clip each step's gradient to this global L2 norm (paper: no clipping;
            ``None`` restores that).
    """

    kind: ClassVar[str] = "gradient_ascent_config"

    lr: float = 1e-2
    epochs: int = 5
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_grad_norm: float | None = 5.0

    def _problems(self) -> list[str]:
        problems = sgd_problems(self)
        if self.max_grad_norm is not None:
            check_positive(problems, "max_grad_norm", self.max_grad_norm)
        return problems


@METHODS.register("gradient_ascent")
class GradientAscent(UnlearningMethod):
    """Maximises the loss on the forget set; see the module docstring."""

    name: ClassVar[str] = "gradient_ascent"
    paper: ClassVar[str] = "Thudi et al., EuroS&P 2022; Jia et al., NeurIPS 2023 (GA baseline)"
    config_class: ClassVar[type[GradientAscentConfig]] = GradientAscentConfig
    config: GradientAscentConfig

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
        passes = masked_sgd(
            model=model,
            data=forget,
            epochs=c.epochs,
            lr=c.lr,
            batch_size=c.batch_size,
            generator=generator,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            loss_fn=loss_fn,
            mask=mask,
            ascent=True,
            max_grad_norm=c.max_grad_norm,
        )
        return passes, {}
