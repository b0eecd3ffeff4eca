"""SalUn: random labelling restricted to the weights most salient for the forget set.

Paper: Fan et al. (2024), "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency", ICLR (``OPTML-Group/Unlearn-Saliency``, ``generate_mask.py`` + ``unlearn/RL.py``).

1. Saliency: s = |∇_θ ℓ(θ_o; D_f)| over every trainable parameter; the mask m_S keeps the
   global top-ρ fraction of entries (one ranking across all tensors; ρ = 0.5 in the paper).
2. Masked RL: per epoch, one pass over D_f with random wrong labels, then one over D_r with
   the true labels (the CIFAR-10 branch of the code), updating only the salient entries:
   θ_u = m_S ⊙ (θ_o + Δθ) + (1 − m_S) ⊙ θ_o.

Differences from the published numbers: the mask is a hard constraint here. The original code
masked gradients only, so weight decay and momentum still moved non-salient weights
(Unlearn-Saliency issue #32, fixed by PR #33 in Feb 2026, after every published table);
:class:`~obliviate.strategies.approximate._loop.MaskedSGD` keeps them bitwise unchanged. The
code also let y' == y; we draw y' != y (``allow_true_label`` restores the old behaviour).
With a pruning mask, pruned entries are never salient and stay zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.strategies.approximate._config import MethodConfig, check_fraction, sgd_problems
from obliviate.strategies.approximate._loop import MaskedSGD
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn
from obliviate.strategies.approximate.random_label import relabel_then_retain

__all__ = ["SalUn", "SalUnConfig", "saliency_mask"]

_GRAD_BATCH = 256


def saliency_mask(
    *,
    model: nn.Module,
    forget: LabelledData,
    loss_fn: LossFn,
    rho: float,
    mask: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], float]:
    """SalUn's weight-saliency mask and its threshold.

    Args:
        model: the trained model (evaluated in eval mode; not modified).
        forget: the forget set (non-empty).
        loss_fn: mean loss; its gradient over D_f ranks the weights.
        rho: fraction of eligible (unpruned, trainable) entries to keep, in (0, 1].
        mask: an optional pruning mask; pruned entries are never selected.

    Returns:
        (name -> 0/1 tensor with 1 = salient, the smallest selected saliency score).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    grads = [torch.zeros_like(p) for _, p in named]
    n = len(forget)
    device = named[0][1].device
    for start in range(0, n, _GRAD_BATCH):
        x = forget.features[start : start + _GRAD_BATCH].to(device)
        y = forget.labels[start : start + _GRAD_BATCH].to(device)
        loss = loss_fn(model(x), y) * (len(y) / n)
        parts = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        for total, part in zip(grads, parts, strict=True):
            if part is not None:
                total.add_(part)
    model.train(was_training)
    scores = []
    for (name, _), grad in zip(named, grads, strict=True):
        score = grad.abs().flatten()
        if mask is not None and name in mask:
            score = torch.where(mask[name].flatten() != 0, score, torch.full_like(score, -1.0))
        scores.append(score)
    flat = torch.cat(scores)
    eligible = int((flat >= 0).sum())
    k = max(1, min(eligible, round(rho * eligible)))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    top = torch.topk(flat, k)
    chosen[top.indices] = True
    out: dict[str, Tensor] = {}
    offset = 0
    for name, param in named:
        size = param.numel()
        out[name] = chosen[offset : offset + size].reshape(param.shape).to(param.dtype)
        offset += size
    return out, float(top.values.min())


@dataclass(frozen=True)
class SalUnConfig(MethodConfig):
    """Configuration of :class:`SalUn`.

    Args:
        rho: fraction of weights kept salient (paper 0.5).
        lr: learning rate (paper README 0.013 for 10% random forgetting on CIFAR-10).
        epochs: epochs, each one pass over D_f then one over D_r (paper 10).
        batch_size: samples per step (paper 256; 64 suits small data sets).
        momentum: SGD momentum (paper 0.9).
        weight_decay: SGD L2 penalty (paper 5e-4); it never reaches non-salient weights.
        allow_true_label: reproduce the published code, which may draw y' == y.
    """

    kind: ClassVar[str] = "salun_config"

    rho: float = 0.5
    lr: float = 0.013
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    allow_true_label: bool = False

    def _problems(self) -> list[str]:
        problems = sgd_problems(self)
        check_fraction(problems, "rho", self.rho)
        if not isinstance(self.allow_true_label, bool):
            problems.append(f"allow_true_label must be a bool; got {self.allow_true_label!r}")
        return problems


@METHODS.register("salun")
class SalUn(UnlearningMethod):
    """Saliency-masked random labelling; see the module docstring."""

    name: ClassVar[str] = "salun"
    paper: ClassVar[str] = "Fan et al., ICLR 2024 (SalUn)"
    config_class: ClassVar[type[SalUnConfig]] = SalUnConfig
    config: SalUnConfig

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
        salient, threshold = saliency_mask(
            model=model, forget=forget, loss_fn=loss_fn, rho=c.rho, mask=mask
        )
        optimiser = MaskedSGD(
            model=model, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, mask=salient
        )
        passes = len(forget) + relabel_then_retain(
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
        kept = sum(float(m.sum()) for m in salient.values())
        total = sum(m.numel() for m in salient.values())
        return passes, {"mask_density": kept / total, "saliency_threshold": threshold}
