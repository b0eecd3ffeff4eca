"""FT: fine-tune the trained model on the retain set only ("catastrophic forgetting").

Paper: Warnecke et al. (2023), "Machine Unlearning of Features and Labels", NDSS, and the
FT baseline of Jia et al. (2023), "Model Sparsity Can Simplify Machine Unlearning", NeurIPS
(``unlearn/FT.py``): SGD(lr 0.01, momentum 0.9, weight decay 5e-4), 10 epochs over D_r at a
constant learning rate.

The forget set is never touched: FT relies on the forget samples' influence fading while the
model keeps fitting the rest. Cheap and safe for utility, but weak at forgetting memorised
samples (Jia et al. report class-wise UA 22.5 vs Retrain's 100).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.strategies.approximate._config import MethodConfig, sgd_problems
from obliviate.strategies.approximate._loop import masked_sgd
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn

__all__ = ["FineTune", "FineTuneConfig"]


@dataclass(frozen=True)
class FineTuneConfig(MethodConfig):
    """Configuration of :class:`FineTune` (defaults: the paper's lr and epochs).

    Args:
        lr: learning rate (paper 0.01; the authors tune it per dataset in [1e-4, 1e-1]).
        epochs: passes over the retain set (paper 10).
        batch_size: samples per step (paper 256 on 45k images; 64 suits small data sets).
        momentum: SGD momentum (paper 0.9).
        weight_decay: SGD L2 penalty (paper 5e-4).
    """

    kind: ClassVar[str] = "finetune_config"

    lr: float = 0.01
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def _problems(self) -> list[str]:
        return sgd_problems(self)


@METHODS.register("finetune")
class FineTune(UnlearningMethod):
    """Fine-tunes on the retain set; see the module docstring."""

    name: ClassVar[str] = "finetune"
    paper: ClassVar[str] = "Warnecke et al., NDSS 2023; Jia et al., NeurIPS 2023 (FT baseline)"
    config_class: ClassVar[type[FineTuneConfig]] = FineTuneConfig
    config: FineTuneConfig

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
            data=retain,
            epochs=c.epochs,
            lr=c.lr,
            batch_size=c.batch_size,
            generator=generator,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            loss_fn=loss_fn,
            mask=mask,
        )
        return passes, {}
