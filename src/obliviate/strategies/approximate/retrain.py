"""Retrain: the reference every approximate method is compared with.

Paper: the Retrain baseline of Jia et al. (2023), "Model Sparsity Can Simplify Machine
Unlearning", NeurIPS (``unlearn/retrain.py``): a fresh initialisation of the same architecture
(weights *not* loaded), trained on D_r only with SGD(lr 0.1, momentum 0.9, weight decay 5e-4)
for 160 epochs (MultiStepLR at 91/136).

Here the architecture is re-initialised by deep-copying the model and calling
``reset_parameters()`` on every submodule that has one, under a seed; a parameter that no
such submodule owns cannot be re-initialised, so the method refuses (ConfigError) rather than
leak trained weights into the "fresh" model. A pruning mask is re-applied after the reset.
With ``reinitialise=False`` the given model is trained as it is (pass an untrained
initialisation, e.g. the original's own, as Jia et al.'s code draws it under the training
seed).

Why is it labelled approximate? It is the gold standard in spirit, but obliviate cannot vouch
at this level that ``retain`` is all the remaining data or that the training recipe matches
the original one; the exact, bitwise-verified retrain lives in
:mod:`obliviate.strategies.exact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.strategies.approximate._config import MethodConfig, check_choice, sgd_problems
from obliviate.strategies.approximate._loop import cosine_lr, enforce_mask, masked_sgd
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn

__all__ = ["RetrainReference", "RetrainReferenceConfig", "reinitialise"]

_SCHEDULES = ("constant", "cosine")


def reinitialise(model: nn.Module) -> None:
    """Re-initialises ``model`` in place from the global torch RNG (seed it first).

    Layers that hold parameters reset first, in module order. Then containers that define
    their own ``reset_parameters()`` (the zoo's ResNet and its blocks: He init of their
    convolutions) run, innermost first, so they have the last word and a retrained model
    starts from the distribution the original did.

    Raises:
        ConfigError: some parameters belong to no submodule with ``reset_parameters()``.
    """
    covered: set[int] = set()
    containers: list[nn.Module] = []
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if not callable(reset):
            continue
        own = list(module.parameters(recurse=False))
        if own:
            reset()
            covered.update(id(p) for p in own)
        else:
            containers.append(module)
    for container in reversed(containers):  # descendants before the modules holding them
        container.reset_parameters()  # type: ignore[operator]
    missing = [name for name, p in model.named_parameters() if id(p) not in covered]
    if missing:
        raise ConfigError(
            f"cannot re-initialise parameters {missing}: their modules have no "
            "reset_parameters(); add one, or retrain with your own training code."
        )


@dataclass(frozen=True)
class RetrainReferenceConfig(MethodConfig):
    """Configuration of :class:`RetrainReference`: match it to the original training.

    Args:
        lr: learning rate (paper 0.1 for ResNet-18; 0.05 suits small models).
        epochs: passes over D_r (paper 160; 30 suits small models and data sets).
        batch_size: samples per step (paper 256).
        momentum: SGD momentum (paper 0.9).
        weight_decay: SGD L2 penalty (paper 5e-4).
        schedule: ``"constant"`` or ``"cosine"`` (per epoch, to zero at the end).
        reinitialise: re-initialise the given model under the seed (the default). False
            trains the given model as it is: pass the original's own, untrained
            initialisation, as Jia et al.'s Retrain does by re-seeding with the original's
            training seed (``--train_seed``). A pruning mask found on the original trains
            best from the weights it grew from (a lottery ticket), but that pair also
            remembers D_f (``benchmarks/mask_memory.py``: a third of the original's excess
            accuracy on it), so keep the default on a pruned model.
    """

    kind: ClassVar[str] = "retrain_reference_config"

    lr: float = 0.05
    epochs: int = 30
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    reinitialise: bool = True

    def _problems(self) -> list[str]:
        problems = sgd_problems(self)
        check_choice(problems, "schedule", self.schedule, _SCHEDULES)
        if not isinstance(self.reinitialise, bool):
            problems.append(f"reinitialise must be True or False; got {self.reinitialise!r}")
        return problems


@METHODS.register("retrain")
class RetrainReference(UnlearningMethod):
    """Trains a re-initialised copy on the retain set only; see the module docstring."""

    name: ClassVar[str] = "retrain"
    paper: ClassVar[str] = "Jia et al., NeurIPS 2023 (Retrain baseline)"
    config_class: ClassVar[type[RetrainReferenceConfig]] = RetrainReferenceConfig
    config: RetrainReferenceConfig

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
        # The base seeded the (forked) global RNG from the seed; reset_parameters draws from it.
        if c.reinitialise:
            with torch.no_grad():
                reinitialise(model)
        enforce_mask(model, mask)

        def lr_at(epoch: int) -> float:
            if c.schedule == "constant":
                return c.lr
            return cosine_lr(c.lr, epoch, c.epochs)

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
            lr_at=lr_at,
        )
        return passes, {}
