"""The contract of approximate unlearning methods: one door, validated input, labelled output.

An approximate method updates an already-trained model so that it behaves more like a model
retrained without the forget set. None of them proves anything, so every result says
``Guarantee.APPROXIMATE`` and carries its evidence (losses, accuracies, solver residuals,
mask densities) for an auditor to judge. The base class does everything that must hold for
every method, so no method can forget it:

* input is validated (shapes against the model, labels in range, finite features, a retain
  set that is not empty) and a bad input raises :class:`~obliviate.errors.ObliviateError`
  before any work;
* the method works on a deep copy: the caller's model and data are never modified, and on
  error nothing is returned;
* randomness comes from the given seed only (a private generator, and a forked, seeded global
  RNG for dropout and re-initialisation);
* a pruning mask (``mask``) is applied to the copy and re-checked afterwards, and the
  result's log says that the mask itself was not unlearned: a magnitude mask found by
  training on the forget set is a function of it, and together with the weights it grew
  from it can still encode that set (``benchmarks/mask_memory.py`` measures this);
* a non-finite result is an error, never a returned model.
"""

from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate._hashing import derive_seed
from obliviate.errors import ConfigError, DataError, TrainingError
from obliviate.registry import Registry
from obliviate.strategies.approximate._loop import enforce_mask
from obliviate.strategies.approximate.data import LabelledData, LossFn, all_finite, default_loss
from obliviate.strategies.base import Guarantee

__all__ = [
    "MASK_NOTE",
    "METHODS",
    "LabelledData",
    "UnlearnResult",
    "UnlearningMethod",
    "unlearn",
]

_EVAL_BATCH = 1024
MASK_NOTE = (
    "the pruning mask is held as given and is not unlearned: if it was found by training on "
    "data that included the forget set, it can still encode that set (see "
    "docs/methods/pruning.md, 'Does the mask remember the forget set?')"
)


@dataclass(frozen=True)
class UnlearnResult:
    """What an approximate method produced and the evidence of what it did.

    Attributes:
        model: a new module; the input model is never modified.
        method: the registered name of the method.
        guarantee: always ``Guarantee.APPROXIMATE``: evidence, not proof.
        seconds: wall-clock time of the method itself (validation and evidence excluded).
        sample_passes: samples x passes actually processed (forward + backward).
        evidence: method-specific numbers (final losses, solver residual, mask density) plus
            ``forget_loss_before/after`` and ``forget_accuracy_before/after`` for every method.
        noop: the forget set was empty; ``model`` equals the input.
        log: human-readable notes on what happened (e.g. a solver stopping early).
    """

    model: nn.Module
    method: str
    guarantee: Guarantee
    seconds: float
    sample_passes: int
    evidence: Mapping[str, float] = field(default_factory=dict)
    noop: bool = False
    log: tuple[str, ...] = ()


class UnlearningMethod(ABC):
    """An approximate unlearning method over any ``nn.Module`` with a loss.

    Subclasses set ``name`` (their registry name), ``paper`` (the citation) and
    ``config_class``, register with ``@METHODS.register(name)``, and implement
    :meth:`_unlearn`, which updates the (already copied) model in place.

    Args:
        config: an instance of ``config_class``; ``None`` uses its defaults.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    config_class: ClassVar[type[Any]]
    guarantee: ClassVar[Guarantee] = Guarantee.APPROXIMATE

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}; "
                f"got {type(config).__name__}."
            )
        self.config = config
        self._notes: list[str] = []

    def note(self, text: str) -> None:
        """Adds a line to the result's ``log`` (for methods, during :meth:`_unlearn`)."""
        self._notes.append(text)

    def unlearn(
        self,
        *,
        model: nn.Module,
        forget: LabelledData,
        retain: LabelledData,
        num_classes: int | None = None,
        loss_fn: LossFn | None = None,
        seed: int = 0,
        mask: Mapping[str, Tensor] | None = None,
    ) -> UnlearnResult:
        """Returns a copy of ``model`` updated to forget ``forget`` while keeping ``retain``.

        Args:
            model: the trained model; never modified.
            forget: the samples to forget.
            retain: the remaining training samples (must not be empty).
            num_classes: number of classes; inferred from the model's output width if omitted.
            loss_fn: ``loss_fn(outputs, labels)`` -> mean loss; cross-entropy by default.
            seed: the only source of randomness.
            mask: parameter name -> 0/1 tensor of the same shape (1 = kept); masked entries
                are set to zero on the copy and stay exactly zero (prune-then-unlearn).

        Returns:
            An :class:`UnlearnResult` labelled ``Guarantee.APPROXIMATE``.

        Raises:
            ConfigError: a bad model, mask, seed or loss function.
            DataError: forget/retain data that do not fit the model or each other, labels
                out of range, or no retain data left.
            TrainingError: the loss or the parameters became NaN or infinite.
        """
        _check_inputs(model=model, forget=forget, retain=retain, loss_fn=loss_fn, seed=seed)
        loss = loss_fn or default_loss
        work = copy.deepcopy(model)
        was_training = model.training
        classes = _check_against_model(work, forget=forget, retain=retain, num_classes=num_classes)
        keep = _check_mask(work, mask)
        self._notes = []
        if len(forget) == 0:
            work.train(was_training)
            return UnlearnResult(
                model=work,
                method=self.name,
                guarantee=Guarantee.APPROXIMATE,
                seconds=0.0,
                sample_passes=0,
                evidence={"forget_size": 0.0, "retain_size": float(len(retain))},
                noop=True,
                log=("empty forget set: nothing to unlearn; the model is an unchanged copy",),
            )
        if len(retain) == 0:
            raise DataError(
                f"the retain set is empty: forgetting all {len(forget)} samples is forgetting "
                "the whole training set; train a new model instead."
            )
        if keep is not None:
            self.note(MASK_NOTE)
        enforce_mask(work, keep)
        original = {n: p.detach().clone() for n, p in work.named_parameters()}
        evidence: dict[str, float] = {
            "forget_size": float(len(forget)),
            "retain_size": float(len(retain)),
        }
        evidence.update(_forget_metrics(work, forget, loss, suffix="before"))
        generator = torch.Generator().manual_seed(seed)
        started = time.perf_counter()
        with torch.random.fork_rng(devices=_cuda_devices(work)):
            torch.manual_seed(derive_seed(seed, "global", self.name))
            passes, own = self._unlearn(
                model=work,
                forget=forget,
                retain=retain,
                num_classes=classes,
                loss_fn=loss,
                generator=generator,
                mask=keep,
            )
        seconds = time.perf_counter() - started
        _check_finite(work, self.name)
        repaired = _mask_violations(work, keep)
        if repaired:
            enforce_mask(work, keep)
            self.note(f"{repaired} masked entries had moved and were reset to zero")
        evidence["mask_repaired_entries"] = float(repaired)
        evidence.update(_forget_metrics(work, forget, loss, suffix="after"))
        evidence["param_distance"] = _distance(work, original)
        evidence.update({k: float(v) for k, v in own.items()})
        work.train(was_training)
        return UnlearnResult(
            model=work,
            method=self.name,
            guarantee=Guarantee.APPROXIMATE,
            seconds=seconds,
            sample_passes=int(passes),
            evidence=evidence,
            log=tuple(self._notes),
        )

    @abstractmethod
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
        """Updates ``model`` (a private copy) in place; returns (sample passes, evidence).

        ``forget`` is non-empty, ``retain`` is non-empty, masked entries are already zero.
        """


METHODS: Registry[type[UnlearningMethod]] = Registry("unlearning method")


def unlearn(
    *,
    method: str,
    model: nn.Module,
    forget: LabelledData,
    retain: LabelledData,
    config: Any = None,
    **kw: Any,
) -> UnlearnResult:
    """The front door: runs the registered ``method`` with ``config`` (an instance, a
    ``to_dict`` mapping, or ``None`` for defaults). Other keywords go to
    :meth:`UnlearningMethod.unlearn`.

    Example:
        >>> import torch
        >>> from obliviate.strategies.approximate import LabelledData, unlearn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> model = torch.nn.Linear(4, 3)
        >>> data = LabelledData(features=torch.randn(20, 4), labels=torch.arange(20) % 3)
        >>> forget, retain = data.subset(torch.arange(5)), data.subset(torch.arange(5, 20))
        >>> result = unlearn(method="finetune", model=model, forget=forget, retain=retain)
        >>> result.guarantee.value
        'approximate'
    """
    cls = METHODS.get(method)
    if isinstance(config, Mapping):
        config = cls.config_class.from_dict(config)
    return cls(config).unlearn(model=model, forget=forget, retain=retain, **kw)


def _check_inputs(
    *,
    model: object,
    forget: object,
    retain: object,
    loss_fn: object,
    seed: object,
) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    for label, data in (("forget", forget), ("retain", retain)):
        if not isinstance(data, LabelledData):
            raise DataError(
                f"{label} must be a LabelledData (features + labels); got {type(data).__name__}."
            )
    if loss_fn is not None and not callable(loss_fn):
        raise ConfigError(f"loss_fn must be callable(outputs, labels); got {loss_fn!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer; got {seed!r}.")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("the model has no trainable parameters; there is nothing to update.")


def _check_against_model(
    model: nn.Module, *, forget: LabelledData, retain: LabelledData, num_classes: int | None
) -> int:
    """Checks both sets fit the model and each other; returns the number of classes."""
    if len(forget) and len(retain):
        if forget.sample_shape != retain.sample_shape:
            raise DataError(
                f"forget samples have shape {forget.sample_shape} but retain samples have "
                f"{retain.sample_shape}; both must come from the same training set."
            )
        if forget.features.dtype != retain.features.dtype:
            raise DataError(
                f"forget features are {forget.features.dtype} but retain features are "
                f"{retain.features.dtype}; convert both to the model's dtype."
            )
    probe = forget if len(forget) else retain
    width: int | None = None
    if len(probe):
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(probe.features[:2].to(_device(model)))
        except Exception as exc:  # any failure here means the data do not fit the model
            raise DataError(
                f"samples of shape {probe.sample_shape} and dtype {probe.features.dtype} do not "
                f"fit the model: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            model.train(was_training)
        if isinstance(out, Tensor) and out.dim() == 2 and out.shape[0] == min(2, len(probe)):
            width = int(out.shape[1])
    if num_classes is None:
        if width is None:
            if not len(probe):
                return 0
            raise DataError(
                "cannot infer num_classes: the model's output is not (batch, classes); pass "
                "num_classes."
            )
        num_classes = width
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1; got {num_classes!r}.")
    if width is not None and width != num_classes:
        raise DataError(
            f"the model outputs {width} scores per sample but num_classes is {num_classes}."
        )
    for label, data in (("forget", forget), ("retain", retain)):
        if len(data):
            low, high = int(data.labels.min()), int(data.labels.max())
            if low < 0 or high >= num_classes:
                raise DataError(
                    f"{label} labels must lie in [0, {num_classes}); got values from {low} "
                    f"to {high}."
                )
    return num_classes


def _check_mask(model: nn.Module, mask: Mapping[str, Tensor] | None) -> dict[str, Tensor] | None:
    """Validates a pruning mask; returns it as 0/1 tensors on each parameter's device."""
    if mask is None:
        return None
    if not isinstance(mask, Mapping):
        raise ConfigError(f"mask must map parameter names to tensors; got {type(mask).__name__}.")
    params = dict(model.named_parameters())
    out: dict[str, Tensor] = {}
    for name, values in mask.items():
        if name not in params:
            raise ConfigError(
                f"mask names parameter {name!r}, which the model does not have; "
                f"parameters: {sorted(params)}."
            )
        if not isinstance(values, Tensor) or tuple(values.shape) != tuple(params[name].shape):
            got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ConfigError(
                f"mask for {name!r} must be a tensor of shape {tuple(params[name].shape)}; "
                f"got {got}."
            )
        if not bool(((values == 0) | (values == 1)).all()):
            raise ConfigError(f"mask for {name!r} must hold only 0 and 1.")
        out[name] = values.detach().to(device=params[name].device, dtype=params[name].dtype)
    return out


def _check_finite(model: nn.Module, method: str) -> None:
    bad = [
        name
        for name, value in [*model.named_parameters(), *model.named_buffers()]
        if value.is_floating_point() and not all_finite(value)
    ]
    if bad:
        raise TrainingError(
            f"{method} produced NaN or infinite values in {bad}; lower the learning rate, the "
            "number of epochs or the step scale."
        )


def _mask_violations(model: nn.Module, mask: Mapping[str, Tensor] | None) -> int:
    if not mask:
        return 0
    params = dict(model.named_parameters())
    return sum(int(((m == 0) & (params[n] != 0)).sum()) for n, m in mask.items())


def _forget_metrics(
    model: nn.Module, data: LabelledData, loss_fn: LossFn, *, suffix: str
) -> dict[str, float]:
    """Mean loss and (for classifiers) accuracy on ``data``, in eval mode; forward only."""
    was_training = model.training
    model.eval()
    total = correct = 0.0
    classifier = True
    with torch.no_grad():
        for start in range(0, len(data), _EVAL_BATCH):
            x = data.features[start : start + _EVAL_BATCH].to(_device(model))
            y = data.labels[start : start + _EVAL_BATCH].to(x.device)
            out = model(x)
            total += float(loss_fn(out, y)) * len(y)
            if isinstance(out, Tensor) and out.dim() == 2:
                correct += float((out.argmax(dim=1) == y).sum())
            else:
                classifier = False
    model.train(was_training)
    metrics = {f"forget_loss_{suffix}": total / len(data)}
    if classifier:
        metrics[f"forget_accuracy_{suffix}"] = correct / len(data)
    return metrics


def _distance(model: nn.Module, original: Mapping[str, Tensor]) -> float:
    squared = sum(
        float(((p.detach() - original[n]).double() ** 2).sum()) for n, p in model.named_parameters()
    )
    return math.sqrt(squared)


def _device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
