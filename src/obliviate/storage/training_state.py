"""Packs a whole training state into tensors + JSON, so a run can resume bit-for-bit.

Exact unlearning retrains from a checkpoint and must land on the same parameters as an
uninterrupted run. That needs more than the weights: optimizer moments, step counts, the
scheduler's position and the RNG state that drives dropout and shuffling. ``torch.save``
would capture all of it but uses pickle, which executes code on load; here every tensor goes
to safetensors and everything else to JSON.

Tensor keys::

    model/<state_dict key>                      parameters and buffers
    optimizer/state/<param index>/<key>          e.g. momentum_buffer, exp_avg, step
    optimizer/param_groups/<group index>/<key>   only when a hyper-parameter is a tensor
    scheduler/<key>...                           only when scheduler state holds tensors
    rng/torch                                    torch's CPU RNG state (uint8)

In the JSON, a tensor is referenced as ``{"$tensor": "<key>"}`` and a non-finite float
(``ReduceLROnPlateau`` starts ``best`` at infinity) as ``{"$float": "inf"}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from obliviate.errors import StorageError
from obliviate.storage.canonical import canonical_json

__all__ = ["RNG_KEY", "pack_training_state", "unpack_training_state"]

KIND = "training_state"
FORMAT_VERSION = 1
RNG_KEY = "rng/torch"
_MODEL_PREFIX = "model/"
_TENSOR_REF = "$tensor"
_FLOAT_REF = "$float"


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    # A copy, so later in-place training steps cannot change what was packed.
    return tensor.detach().to("cpu").resolve_conj().resolve_neg().contiguous().clone()


def _encode(
    value: Any, path: list[str], tensors: dict[str, torch.Tensor], drop_callables: bool
) -> Any:
    where = "/".join(path)
    if isinstance(value, torch.Tensor):
        if where in tensors:
            raise StorageError(
                f"two values of the training state would both be stored as {where!r}."
            )
        tensors[where] = _cpu_copy(value)
        return {_TENSOR_REF: where}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_REF: repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        encoded: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StorageError(
                    f"{where} has the key {key!r} ({type(key).__name__}); only string keys "
                    "can be stored without pickle."
                )
            if drop_callables and callable(item):
                # Functions cannot be serialised without pickle; the fresh object the state is
                # loaded into already has its own (as PyTorch does for LambdaLR).
                continue
            encoded[key] = _encode(item, [*path, key], tensors, drop_callables)
        return encoded
    if isinstance(value, (list, tuple)):
        return [
            None
            if drop_callables and callable(item)
            else _encode(item, [*path, str(index)], tensors, drop_callables)
            for index, item in enumerate(value)
        ]
    raise StorageError(
        f"{where} holds a {type(value).__name__}, which cannot be stored without pickle; "
        "training state may hold tensors, numbers, strings, None, lists and string-keyed dicts."
    )


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR_REF}:
            key = value[_TENSOR_REF]
            if key not in tensors:
                raise StorageError(
                    f"the training state refers to tensor {key!r}, which is missing."
                )
            # Cloned: optimizers update their state in place, and the caller's checkpoint
            # tensors must stay usable for another resume.
            return tensors[key].clone()
        if set(value) == {_FLOAT_REF}:
            return float(value[_FLOAT_REF])
        return {key: _decode(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    return value


def _like(value: Any, template: Any) -> Any:
    # JSON turns tuples into lists; the fresh object's own state_dict says which were tuples
    # (e.g. Adam's betas), so the loaded state compares equal to the original.
    if isinstance(template, tuple) and isinstance(value, list):
        if len(value) == len(template):
            return tuple(_like(v, t) for v, t in zip(value, template, strict=True))
        return tuple(value)
    if isinstance(template, list) and isinstance(value, list) and len(value) == len(template):
        return [_like(v, t) for v, t in zip(value, template, strict=True)]
    if isinstance(template, dict) and isinstance(value, dict):
        return {key: _like(item, template.get(key)) for key, item in value.items()}
    return value


def pack_training_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    rng_state: torch.Tensor | None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Splits a training state into tensors and JSON-able metadata, without pickle.

    The two halves are what :meth:`CheckpointStore.put
    <obliviate.storage.CheckpointStore.put>` takes; all tensors are independent CPU copies.

    Args:
        model: Its ``state_dict()`` (parameters and buffers) is stored under ``model/``.
        optimizer: Its state tensors go to ``optimizer/state/...``; step counts that are
            Python numbers and the param groups (lr, momentum, ...) go to ``meta["optimizer"]``.
        scheduler: Its ``state_dict()`` goes to ``meta["scheduler"]``; entries holding
            functions are dropped (list entries become ``None``), as PyTorch does for lambdas.
        rng_state: Usually ``torch.get_rng_state()`` taken at the same moment; stored as
            ``rng/torch``.
        extra: JSON-able values the caller wants back, e.g. the epoch and batch position.

    Returns:
        ``(tensors, meta)``.

    Raises:
        StorageError: some state cannot be represented without pickle (the message says where).
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise StorageError(
                f"model state {name!r} is a {type(value).__name__}, not a tensor; modules with "
                "non-tensor extra state cannot be stored without pickle."
            )
        tensors[_MODEL_PREFIX + name] = _cpu_copy(value)

    optimizer_meta: dict[str, Any] | None = None
    if optimizer is not None:
        state_dict = optimizer.state_dict()
        state = {
            str(index): _encode(entry, ["optimizer", "state", str(index)], tensors, False)
            for index, entry in state_dict["state"].items()
        }
        groups = [
            _encode(group, ["optimizer", "param_groups", str(index)], tensors, False)
            for index, group in enumerate(state_dict["param_groups"])
        ]
        optimizer_meta = {"state": state, "param_groups": groups}

    scheduler_meta: Any = None
    if scheduler is not None:
        scheduler_meta = _encode(scheduler.state_dict(), ["scheduler"], tensors, True)

    if rng_state is not None:
        if not isinstance(rng_state, torch.Tensor) or rng_state.dtype != torch.uint8:
            raise StorageError(
                "rng_state must be the uint8 tensor torch.get_rng_state() returns; got "
                f"{getattr(rng_state, 'dtype', type(rng_state).__name__)}."
            )
        tensors[RNG_KEY] = _cpu_copy(rng_state)

    meta: dict[str, Any] = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "optimizer": optimizer_meta,
        "scheduler": scheduler_meta,
        "extra": dict(extra) if extra is not None else {},
    }
    canonical_json(meta)  # fails here, naming the bad value, rather than later in put()
    return tensors, meta


def unpack_training_state(
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> torch.Tensor | None:
    """Loads a packed training state into freshly built objects.

    The objects must be built the same way as the packed ones (same architecture, same
    optimizer class and param groups, same scheduler class and lambdas); their current values
    are overwritten. The optimizer is loaded before the scheduler, because building a
    scheduler changes the optimizer's learning rates.

    Args:
        tensors: The tensors half from :func:`pack_training_state` (or a stored checkpoint).
        meta: The metadata half.
        model: Receives the parameters and buffers (strict: every key must match).
        optimizer: Receives the optimizer state, if given.
        scheduler: Receives the scheduler state, if given.

    Returns:
        A copy of the stored RNG state, or ``None`` if none was packed. It is not applied:
        call ``torch.set_rng_state`` when the resumed run should continue the random stream.

    Raises:
        StorageError: the metadata is not a training state, lacks the state asked for, or
            does not fit the given objects.
    """
    if meta.get("kind") != KIND or meta.get("format_version") != FORMAT_VERSION:
        raise StorageError(
            f"expected training-state metadata (kind {KIND!r}, format_version {FORMAT_VERSION}); "
            f"got kind {meta.get('kind')!r}, format_version {meta.get('format_version')!r}."
        )
    model_state = {
        name[len(_MODEL_PREFIX) :]: tensor
        for name, tensor in tensors.items()
        if name.startswith(_MODEL_PREFIX)
    }
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise StorageError(f"the stored model state does not fit this model: {exc}") from exc

    if optimizer is not None:
        saved = meta.get("optimizer")
        if not isinstance(saved, dict):
            raise StorageError(
                "an optimizer was given, but the training state has no optimizer state."
            )
        state_dict = {
            "state": {
                int(index): _decode(entry, tensors) for index, entry in saved["state"].items()
            },
            "param_groups": _decode(saved["param_groups"], tensors),
        }
        state_dict = _like(state_dict, optimizer.state_dict())
        try:
            optimizer.load_state_dict(state_dict)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise StorageError(
                f"the stored optimizer state does not fit this optimizer: {exc}"
            ) from exc

    if scheduler is not None:
        saved_scheduler = meta.get("scheduler")
        if not isinstance(saved_scheduler, dict):
            raise StorageError(
                "a scheduler was given, but the training state has no scheduler state."
            )
        scheduler_state = _like(_decode(saved_scheduler, tensors), scheduler.state_dict())
        try:
            scheduler.load_state_dict(scheduler_state)
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            raise StorageError(
                f"the stored scheduler state does not fit this scheduler: {exc}"
            ) from exc

    rng = tensors.get(RNG_KEY)
    return None if rng is None else rng.clone()
