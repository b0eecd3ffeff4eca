"""Embeddings of a classifier: the input to its final Linear layer.

Learned aggregators (SISPA) train on what each shard model computes just before its
classifier. A model either exposes that itself (the :class:`EmbeddingModel` protocol: an
``embed(x)`` method and an ``embedding_dim`` attribute) or is taken to end in an
``nn.Linear`` head, whose input is captured with a forward pre-hook. Every zoo model ends in
such a head.

Embeddings are computed in fixed-size, zero-padded batches. On CPU a row's result can
depend on how many rows the matrix multiply had (a single row takes a different kernel) and
even on the row's position in the batch (measured here: a 6-8-3 MLP gives different last
bits to about half the rows when they move by one position). An exact strategy compares
embeddings bit for bit, so :func:`embed` takes optional ``slots``: each row is then always
computed at position ``slots[i]`` of a batch of constant shape, whichever other samples are
embedded with it. Rows never interact, so the other rows' contents do not matter.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate.errors import ConfigError

__all__ = ["EMBED_BATCH", "EmbeddingModel", "embed", "embedding_dim", "final_linear"]

EMBED_BATCH = 256


@runtime_checkable
class EmbeddingModel(Protocol):
    """A model that says what its embedding is, instead of ending in an ``nn.Linear``."""

    embedding_dim: int

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(batch, embedding_dim)`` embedding of ``x``."""


def final_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` registered in ``model`` (its classifier head).

    Raises:
        ConfigError: the model has no ``nn.Linear``; implement :class:`EmbeddingModel`.
    """
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ConfigError(
            f"cannot find the embedding of a {type(model).__name__}: it has no nn.Linear head; "
            "give it an embed(x) method and an embedding_dim attribute instead."
        )
    return heads[-1]


def embedding_dim(model: nn.Module) -> int:
    """Width of the embedding :func:`embed` returns for ``model``."""
    if isinstance(model, EmbeddingModel):
        return int(model.embedding_dim)
    return int(final_linear(model).in_features)


def _batches(
    n: int, batch_size: int, slots: npt.NDArray[np.int64] | None
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """``(rows, positions)`` per forward pass: consecutive rows, or rows at their slots."""
    if slots is None:
        return [
            (np.arange(lo, min(lo + batch_size, n)), np.arange(min(batch_size, n - lo)))
            for lo in range(0, n, batch_size)
        ]
    order = np.lexsort((np.arange(n), slots))
    ordered = slots[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.searchsorted(ordered, ordered, side="left")
    by_rank = np.lexsort((slots, rank))
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max(initial=-1)) + 2))
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = by_rank[lo:hi].astype(np.int64)
        out.append((rows, slots[rows].astype(np.int64)))
    return out


def embed(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    batch_size: int = EMBED_BATCH,
    slots: npt.NDArray[np.int64] | None = None,
    logits: bool = False,
) -> torch.Tensor:
    """Embeds ``inputs`` with ``model`` in eval mode, in zero-padded batches of one shape.

    Args:
        model: an :class:`EmbeddingModel` or a module ending in an ``nn.Linear`` head.
        inputs: ``(n, *input_shape)`` float tensor.
        batch_size: rows per forward pass.
        slots: optional position in ``[0, batch_size)`` for each row (a hash of its sample
            id); with them, a row's embedding is bitwise the same in every call.
        logits: return the model's output (its class logits) instead of the embedding: a
            much narrower input for an aggregator, at the cost of what the head discards.

    Returns:
        A ``(n, embedding_dim)`` float32 tensor, or ``(n, classes)`` with ``logits``.
    """
    n = int(inputs.shape[0])
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}.")
    if slots is not None:
        slots = np.asarray(slots, dtype=np.int64)
        if slots.shape != (n,) or (n and (slots.min() < 0 or slots.max() >= batch_size)):
            raise ConfigError(f"slots must be {n} positions in [0, {batch_size}).")
    if logits:
        return _forward_padded(model, inputs, batch_size=batch_size, slots=slots)
    width = embedding_dim(model)
    out = torch.empty((n, width), dtype=torch.float32)
    captured: list[torch.Tensor] = []
    hook = None
    if not isinstance(model, EmbeddingModel):

        def grab(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured.append(args[0])

        hook = final_linear(model).register_forward_pre_hook(grab)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for rows, positions in _batches(n, batch_size, slots):
                batch = torch.zeros((batch_size, *inputs.shape[1:]), dtype=inputs.dtype)
                index, where = torch.from_numpy(rows), torch.from_numpy(positions)
                batch[where] = inputs[index]
                if isinstance(model, EmbeddingModel):
                    value = model.embed(batch)
                else:
                    captured.clear()
                    model(batch)
                    value = captured[-1]
                out[index] = value.reshape(batch_size, -1)[where].float()
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    return out


def _forward_padded(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    batch_size: int,
    slots: npt.NDArray[np.int64] | None,
) -> torch.Tensor:
    """The model's own outputs, computed in the same fixed-shape padded batches as embed."""
    n = int(inputs.shape[0])
    out: torch.Tensor | None = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for rows, positions in _batches(n, batch_size, slots):
                batch = torch.zeros((batch_size, *inputs.shape[1:]), dtype=inputs.dtype)
                index, where = torch.from_numpy(rows), torch.from_numpy(positions)
                batch[where] = inputs[index]
                value = model(batch).reshape(batch_size, -1)[where].float()
                if out is None:
                    out = torch.empty((n, value.shape[1]), dtype=torch.float32)
                out[index] = value
    finally:
        model.train(was_training)
    return out if out is not None else torch.empty((0, 0), dtype=torch.float32)
