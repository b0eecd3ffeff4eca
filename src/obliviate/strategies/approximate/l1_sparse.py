"""ℓ1-sparse: fine-tune on the retain set with a linearly decaying ℓ1 penalty.

Paper: Jia et al. (2023), "Model Sparsity Can Simplify Machine Unlearning", NeurIPS
(``unlearn/FT.py: FT_l1``): θ_u = argmin_θ ℓ(θ; D_r) + γ_t‖θ‖₁, with
γ_t = γ·(1 − t / (E − no_l1_epochs)) in epoch t (and 0 in the last ``no_l1_epochs``), over
*all* parameters. Sparsity shrinks the weights that only the forget set supported; the decay
lets the model recover utility in the late epochs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.strategies.approximate._config import (
    MethodConfig,
    check_non_negative,
    sgd_problems,
)
from obliviate.strategies.approximate._loop import masked_sgd
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn

__all__ = ["L1Sparse", "L1SparseConfig", "l1_strength"]


def l1_strength(*, gamma: float, epoch: int, epochs: int, no_l1_epochs: int) -> float:
    """γ_t of the paper's linearly decaying schedule (0 once the ℓ1 epochs are over)."""
    active = epochs - no_l1_epochs
    if epoch >= active:
        return 0.0
    return gamma * (1.0 - epoch / active)


@dataclass(frozen=True)
class L1SparseConfig(MethodConfig):
    """Configuration of :class:`L1Sparse`.

    Args:
        gamma: initial ℓ1 strength γ (a third-party script uses 1e-4; the argparse default of
            0.2 is far too large).
        no_l1_epochs: final epochs without the penalty (paper default 0).
        lr: learning rate (paper 0.01).
        epochs: passes over D_r (paper 10).
        batch_size: samples per step (paper 256; 64 suits small data sets).
        momentum: SGD momentum (paper 0.9).
        weight_decay: SGD L2 penalty (paper 5e-4).
    """

    kind: ClassVar[str] = "l1_sparse_config"

    gamma: float = 1e-4
    no_l1_epochs: int = 0
    lr: float = 0.01
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def _problems(self) -> list[str]:
        problems = sgd_problems(self)
        check_non_negative(problems, "gamma", self.gamma)
        valid_epochs = isinstance(self.epochs, int) and self.epochs >= 1
        if not (
            isinstance(self.no_l1_epochs, int)
            and self.no_l1_epochs >= 0
            and (not valid_epochs or self.no_l1_epochs < self.epochs)
        ):
            problems.append(
                f"no_l1_epochs must be an integer in [0, epochs); got {self.no_l1_epochs!r}"
            )
        return problems


@METHODS.register("l1_sparse")
class L1Sparse(UnlearningMethod):
    """Retain fine-tuning with a decaying ℓ1 penalty; see the module docstring."""

    name: ClassVar[str] = "l1_sparse"
    paper: ClassVar[str] = "Jia et al., NeurIPS 2023 (Model Sparsity Can Simplify MU)"
    config_class: ClassVar[type[L1SparseConfig]] = L1SparseConfig
    config: L1SparseConfig

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
        params = [p for p in model.parameters() if p.requires_grad]

        def penalty(_: nn.Module, epoch: int) -> Tensor:
            strength = l1_strength(
                gamma=c.gamma, epoch=epoch, epochs=c.epochs, no_l1_epochs=c.no_l1_epochs
            )
            zero = params[0].new_zeros(())
            if strength == 0.0:
                return zero
            return strength * sum((p.abs().sum() for p in params), zero)

        before = _l1(params)
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
            extra_loss=penalty,
        )
        return passes, {"l1_norm_before": before, "l1_norm_after": _l1(params)}


def _l1(params: list[nn.Parameter]) -> float:
    return float(sum(float(p.detach().abs().sum()) for p in params))
