"""Prune first, then unlearn: magnitude pruning with rewinding (OMP, IMP) and SynFlow.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023. Their
analysis bounds the unlearning error of SGD by the masked weight change, so approximate
methods get closer to retraining on a sparse model; their recipe prunes with one-shot
magnitude pruning (OMP: train dense, prune globally by |w|, rewind the survivors to an early
epoch, retrain with the mask), iterative magnitude pruning (IMP: the same in rounds of 20%)
or SynFlow (Tanaka et al., "Pruning neural networks without any data by iteratively
conserving synaptic flow", NeurIPS 2020: data-free scores |dR/dw * w| of the linearised
network at initialisation, pruned over many small steps), then runs any unlearning method
on the sparse model with the mask held (``METHODS.get(name)().unlearn(..., mask=mask)``).

What is pruned: the weights of ``Conv*d`` and ``Linear`` layers (Jia et al. prune conv
weights only: ``targets="conv"``), one global magnitude ranking; biases and normalisation
parameters never. Pruned weights are exactly zero and stay zero through training.

What ``model`` must be: by default an *untrained*, freshly initialised network; :func:`prune`
trains it (dense, then sparse) with the recipe in :class:`PruneConfig` and returns the trained
dense network too (``PruneResult.dense``), so a benchmark gets its dense and sparse originals
from one call. With ``pretrained=True`` the model is an already-trained dense network: OMP and
IMP rank its magnitudes and rewind to ``rewind_state`` (its weights at ``rewind_epoch``, if
the caller kept them) or else keep the trained weights and retrain with the mask from
epoch ``rewind_epoch`` of the schedule (learning-rate rewinding, Renda et al. 2020).
"""

from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate._hashing import derive_seed
from obliviate.errors import ConfigError, DataError
from obliviate.registry import Registry
from obliviate.strategies.approximate._config import (
    MethodConfig,
    check_choice,
    check_positive_int,
    sgd_problems,
)
from obliviate.strategies.approximate._loop import MaskedSGD, cosine_lr, enforce_mask
from obliviate.strategies.approximate.data import LabelledData, LossFn, default_loss

__all__ = [
    "PRUNERS",
    "IterativeMagnitudePruner",
    "OneShotMagnitudePruner",
    "PruneConfig",
    "PruneResult",
    "Pruner",
    "SynFlowPruner",
    "measure_sparsity",
    "prunable_parameters",
    "prune",
    "synflow_mask",
]

Mask = dict[str, Tensor]
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TARGETS: dict[str, tuple[type[nn.Module], ...]] = {
    "conv_linear": (*_CONV, nn.Linear),
    "conv": _CONV,
}
_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)


@dataclass(frozen=True)
class PruneConfig(MethodConfig):
    """The training recipe around pruning.

    Args:
        epochs: epochs of one full training run (dense, and each sparse retraining).
        lr, batch_size, momentum, weight_decay: SGD settings.
        schedule: ``"cosine"`` (per epoch, to zero) or ``"constant"``.
        rewind_epoch: OMP/IMP rewind the surviving weights (and the schedule) to this epoch
            of dense training; 0 rewinds to the initialisation (the lottery-ticket form).
        imp_rate: IMP's fraction of the remaining weights pruned per round (paper 0.2).
        synflow_iterations: SynFlow's pruning steps (paper 100).
        targets: ``"conv_linear"`` or ``"conv"`` (Jia et al.'s choice).
    """

    kind: ClassVar[str] = "prune_config"

    epochs: int = 10
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    rewind_epoch: int = 1
    imp_rate: float = 0.2
    synflow_iterations: int = 100
    targets: str = "conv_linear"

    def _problems(self) -> list[str]:
        problems = sgd_problems(self)
        check_choice(problems, "schedule", self.schedule, ("cosine", "constant"))
        check_choice(problems, "targets", self.targets, tuple(_TARGETS))
        check_positive_int(problems, "synflow_iterations", self.synflow_iterations)
        if not (isinstance(self.rewind_epoch, int) and 0 <= self.rewind_epoch < self.epochs):
            problems.append(f"rewind_epoch must be in [0, epochs); got {self.rewind_epoch!r}")
        if not (isinstance(self.imp_rate, float) and 0 < self.imp_rate < 1):
            problems.append(f"imp_rate must lie in (0, 1); got {self.imp_rate!r}")
        return problems

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch``."""
        if self.schedule == "constant":
            return self.lr
        return cosine_lr(self.lr, epoch, self.epochs)


@dataclass(frozen=True)
class PruneResult:
    """A sparse model and its mask.

    Attributes:
        model: the trained sparse model (pruned weights exactly zero).
        mask: parameter name -> 0/1 tensor (1 = kept) for every prunable weight; pass it as
            ``mask=`` to an unlearning method.
        sparsity: measured fraction of prunable weights that are zero.
        target_sparsity: the requested fraction.
        method: the pruner's name.
        rounds: pruning rounds (1 for OMP, several for IMP, SynFlow's iterations).
        sample_passes: samples x epochs of all training.
        seconds: wall-clock time.
        dense: the trained dense network OMP/IMP pruned (None for SynFlow or pretrained).
    """

    model: nn.Module
    mask: Mask
    sparsity: float
    target_sparsity: float
    method: str
    rounds: int
    sample_passes: int
    seconds: float
    dense: nn.Module | None = None


def prunable_parameters(model: nn.Module, targets: str = "conv_linear") -> dict[str, Tensor]:
    """The weights pruning may touch, by parameter name: conv (and linear) weights only."""
    kinds = _TARGETS[targets]
    out: dict[str, Tensor] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, kinds) and isinstance(weight, Tensor):
            out[f"{name}.weight" if name else "weight"] = weight
    return out


def measure_sparsity(model: nn.Module, targets: str = "conv_linear") -> float:
    """The fraction of prunable weights that are exactly zero."""
    params = prunable_parameters(model, targets)
    total = sum(p.numel() for p in params.values())
    return sum(int((p == 0).sum()) for p in params.values()) / max(total, 1)


class Pruner(ABC):
    """A way of finding a sparse trainable network; see the module docstring."""

    name: ClassVar[str]
    paper: ClassVar[str]

    def __init__(self, config: PruneConfig | None = None) -> None:
        if config is not None and not isinstance(config, PruneConfig):
            raise ConfigError(f"{type(self).__name__} needs a PruneConfig; got {config!r}.")
        self.config = config or PruneConfig()

    def prune(
        self,
        *,
        model: nn.Module,
        train: LabelledData,
        sparsity: float,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        pretrained: bool = False,
        rewind_state: Mapping[str, Tensor] | None = None,
    ) -> PruneResult:
        """Returns a trained sparse copy of ``model`` (never modified) and its mask.

        Raises:
            ConfigError: sparsity outside [0, 1), no prunable layer, a bad rewind state.
            DataError: ``train`` is empty or does not fit the model.
        """
        if not (isinstance(sparsity, int | float) and 0 <= sparsity < 1):
            raise ConfigError(f"sparsity must lie in [0, 1); got {sparsity!r}.")
        work = copy.deepcopy(model)
        params = prunable_parameters(work, self.config.targets)
        if not params:
            raise ConfigError(
                f"the model has no {self.config.targets.replace('_', '/')} weights to prune."
            )
        _check_data(work, train)
        if rewind_state is not None:
            missing = sorted(set(work.state_dict()) - set(rewind_state))
            if missing or not pretrained:
                raise ConfigError(
                    "rewind_state needs pretrained=True and every state entry of the model; "
                    f"missing {missing[:5]}."
                )
        started = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(derive_seed(seed, "prune", self.name))
            run = _Run(self.config, train, loss_fn or default_loss, seed)
            mask, rounds, dense = self._prune(
                work, run, sparsity=float(sparsity), pretrained=pretrained, rewind=rewind_state
            )
        enforce_mask(work, mask)
        return PruneResult(
            model=work,
            mask=mask,
            sparsity=measure_sparsity(work, self.config.targets),
            target_sparsity=float(sparsity),
            method=self.name,
            rounds=rounds,
            sample_passes=run.passes,
            seconds=time.perf_counter() - started,
            dense=dense,
        )

    @abstractmethod
    def _prune(
        self,
        model: nn.Module,
        run: _Run,
        *,
        sparsity: float,
        pretrained: bool,
        rewind: Mapping[str, Tensor] | None,
    ) -> tuple[Mask, int, nn.Module | None]:
        """Prunes and trains ``model`` in place; returns (mask, rounds, dense model)."""


class _Run:
    """Training plumbing shared by the pruners: seeded phases, schedule, rewind capture."""

    def __init__(self, config: PruneConfig, data: LabelledData, loss: LossFn, seed: int) -> None:
        self.config, self.data, self.loss, self.seed = config, data, loss, seed
        self.passes = 0
        self.phase = 0

    def train(
        self,
        model: nn.Module,
        *,
        mask: Mask | None,
        start_epoch: int = 0,
        capture_at: int | None = None,
    ) -> dict[str, Tensor] | None:
        """Trains epochs ``start_epoch..epochs-1``; returns the state after ``capture_at``."""
        c = self.config
        self.phase += 1
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "prune", self.phase))
        enforce_mask(model, mask)
        optimiser = MaskedSGD(
            model=model, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, mask=mask
        )
        captured = _snapshot(model) if capture_at == start_epoch else None
        for epoch in range(start_epoch, c.epochs):
            optimiser.set_lr(c.lr_at(epoch))
            self.passes += optimiser.run_epoch(
                data=self.data,
                batch_size=c.batch_size,
                generator=generator,
                epoch=epoch,
                loss_fn=self.loss,
            )
            if capture_at == epoch + 1:
                captured = _snapshot(model)
        return captured

    def dense_then_rewind_point(
        self, model: nn.Module, *, pretrained: bool, rewind: Mapping[str, Tensor] | None
    ) -> tuple[dict[str, Tensor] | None, nn.Module | None]:
        """Trains dense unless pretrained; returns (rewind state, trained dense copy)."""
        if pretrained:
            return (None if rewind is None else {k: v.clone() for k, v in rewind.items()}), None
        state = self.train(model, mask=None, capture_at=self.config.rewind_epoch)
        return state, copy.deepcopy(model)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _magnitude_mask(scores: Mapping[str, Tensor], keep: int, previous: Mask | None) -> Mask:
    """Keeps the ``keep`` highest scores globally; entries pruned before stay pruned."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().double() for n in names])
    if previous is not None:
        dead = torch.cat([(previous[n] == 0).flatten() for n in names])
        flat = flat.masked_fill(dead, -math.inf)
    kept = torch.zeros_like(flat, dtype=torch.bool)
    kept[torch.topk(flat, keep, sorted=False).indices] = True
    out: Mask = {}
    offset = 0
    for name in names:
        size = scores[name].numel()
        out[name] = kept[offset : offset + size].reshape(scores[name].shape).to(scores[name].dtype)
        offset += size
    return out


def _keep_count(params: Mapping[str, Tensor], sparsity: float) -> int:
    total = sum(p.numel() for p in params.values())
    return max(1, total - round(sparsity * total))


def _rewind_and_retrain(
    model: nn.Module, run: _Run, mask: Mask, state: Mapping[str, Tensor] | None
) -> None:
    if state is not None:
        model.load_state_dict(state)
    run.train(model, mask=mask, start_epoch=run.config.rewind_epoch)


PRUNERS: Registry[type[Pruner]] = Registry("pruner")


@PRUNERS.register("omp")
class OneShotMagnitudePruner(Pruner):
    """OMP: train dense, prune to the target at once by |w|, rewind, retrain with the mask."""

    name: ClassVar[str] = "omp"
    paper: ClassVar[str] = "Jia et al., NeurIPS 2023 (OMP with rewinding)"

    def _prune(
        self,
        model: nn.Module,
        run: _Run,
        *,
        sparsity: float,
        pretrained: bool,
        rewind: Mapping[str, Tensor] | None,
    ) -> tuple[Mask, int, nn.Module | None]:
        state, dense = run.dense_then_rewind_point(model, pretrained=pretrained, rewind=rewind)
        params = prunable_parameters(model, self.config.targets)
        mask = _magnitude_mask(
            {n: p.abs() for n, p in params.items()}, _keep_count(params, sparsity), None
        )
        _rewind_and_retrain(model, run, mask, state)
        return mask, 1, dense


@PRUNERS.register("imp")
class IterativeMagnitudePruner(Pruner):
    """IMP: rounds of pruning ``imp_rate`` of the remaining weights, each rewound and retrained."""

    name: ClassVar[str] = "imp"
    paper: ClassVar[str] = "Jia et al., NeurIPS 2023 (IMP with rewinding)"

    def _prune(
        self,
        model: nn.Module,
        run: _Run,
        *,
        sparsity: float,
        pretrained: bool,
        rewind: Mapping[str, Tensor] | None,
    ) -> tuple[Mask, int, nn.Module | None]:
        state, dense = run.dense_then_rewind_point(model, pretrained=pretrained, rewind=rewind)
        params = prunable_parameters(model, self.config.targets)
        rate = self.config.imp_rate
        rounds = max(1, math.ceil(math.log(1 - sparsity) / math.log(1 - rate) - 1e-9))
        mask: Mask | None = None
        for r in range(1, rounds + 1):
            target = sparsity if r == rounds else 1 - (1 - rate) ** r
            scores = {n: p.abs() for n, p in params.items()}
            mask = _magnitude_mask(scores, _keep_count(params, target), mask)
            _rewind_and_retrain(model, run, mask, state)
        if mask is None:  # pragma: no cover - rounds >= 1
            raise ConfigError("IMP ran no round.")
        return mask, rounds, dense


@PRUNERS.register("synflow")
class SynFlowPruner(Pruner):
    """SynFlow: data-free iterative synaptic-flow pruning at initialisation, then training."""

    name: ClassVar[str] = "synflow"
    paper: ClassVar[str] = "Tanaka et al., NeurIPS 2020 (SynFlow), as used by Jia et al. 2023"

    def _prune(
        self,
        model: nn.Module,
        run: _Run,
        *,
        sparsity: float,
        pretrained: bool,
        rewind: Mapping[str, Tensor] | None,
    ) -> tuple[Mask, int, nn.Module | None]:
        mask = synflow_mask(
            model,
            sample_shape=run.data.sample_shape,
            sparsity=sparsity,
            iterations=self.config.synflow_iterations,
            targets=self.config.targets,
        )
        run.train(model, mask=mask)
        return mask, self.config.synflow_iterations, None


def synflow_mask(
    model: nn.Module,
    *,
    sample_shape: tuple[int, ...],
    sparsity: float,
    iterations: int = 100,
    targets: str = "conv_linear",
) -> Mask:
    """SynFlow scores on a linearised float64 copy: |w|, no normalisation, all-ones input.

    The sparsity follows the exponential schedule ``1 - (1 - s)^(k / iterations)``. Normalisation
    layers become identities in the copy: per-sample normalisation of an all-ones input
    would cancel the flow SynFlow measures.
    """
    probe = copy.deepcopy(model).double().eval()
    _strip_norms(probe)
    with torch.no_grad():
        for value in probe.state_dict().values():
            if value.is_floating_point():
                value.abs_()
    params = prunable_parameters(probe, targets)
    original = {n: p.detach().clone() for n, p in params.items()}
    ones = torch.ones((1, *sample_shape), dtype=torch.float64)
    mask: Mask | None = None
    for k in range(1, iterations + 1):
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(original[name] * (1 if mask is None else mask[name].double()))
        probe.zero_grad(set_to_none=True)
        probe(ones).sum().backward()
        scores = {
            n: (p.grad.detach() * p.detach()).abs() if p.grad is not None else torch.zeros_like(p)
            for n, p in params.items()
        }
        mask = _magnitude_mask(
            scores, _keep_count(params, 1 - (1 - sparsity) ** (k / iterations)), mask
        )
    if mask is None:  # pragma: no cover - iterations >= 1
        raise ConfigError("synflow ran no iteration.")
    dtypes = prunable_parameters(model, targets)
    return {n: m.to(dtypes[n].dtype) for n, m in mask.items()}


def _strip_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, _NORMS):
            setattr(module, name, nn.Identity())
        else:
            _strip_norms(child)


def _check_data(model: nn.Module, data: LabelledData) -> None:
    if not isinstance(data, LabelledData):
        raise DataError(f"train must be a LabelledData; got {type(data).__name__}.")
    if len(data) == 0:
        raise DataError("train is empty; pruning needs data to train the sparse network.")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(data.features[:2])
    except Exception as exc:  # any failure means the data do not fit the model
        raise DataError(
            f"samples of shape {data.sample_shape} do not fit the model: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if out.dim() == 2 and int(data.labels.max()) >= out.shape[1]:
        raise DataError(
            f"labels go up to {int(data.labels.max())}; the model has {out.shape[1]} outputs."
        )


def prune(
    *,
    method: str,
    model: nn.Module,
    train: LabelledData,
    sparsity: float,
    config: PruneConfig | Mapping[str, Any] | None = None,
    seed: int = 0,
    **kw: Any,
) -> PruneResult:
    """The front door: ``PRUNERS.get(method)(config).prune(...)``; see :meth:`Pruner.prune`.

    Example:
        >>> import torch
        >>> from obliviate.strategies.approximate import LabelledData
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> data = LabelledData(features=torch.randn(64, 4), labels=torch.arange(64) % 2)
        >>> result = prune(method="omp", model=net, train=data, sparsity=0.5,
        ...                config=PruneConfig(epochs=2, rewind_epoch=1))
        >>> round(result.sparsity, 2)
        0.5
    """
    cls = PRUNERS.get(method)
    if isinstance(config, Mapping):
        config = PruneConfig.from_dict(config)
    return cls(config).prune(model=model, train=train, sparsity=sparsity, seed=seed, **kw)
