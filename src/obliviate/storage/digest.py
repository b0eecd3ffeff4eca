"""Content digests for tensors and checkpoints.

A checkpoint's id is derived from what it holds, never from where or when it was written, so
retraining the same component on the same data finds the existing checkpoint, and any
change to a stored byte is detectable on read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

from obliviate.errors import StorageError
from obliviate.storage.canonical import canonical_json

__all__ = ["checkpoint_id_for", "meta_digest", "tensor_digest"]

_CHECKPOINT_DOMAIN = b"obliviate-checkpoint-v1\0"


def _update_framed(hasher: Any, data: bytes) -> None:
    # An 8-byte length before every field keeps boundaries unambiguous: ("ab", "c") and
    # ("a", "bc") would otherwise hash alike.
    hasher.update(len(data).to_bytes(8, "big"))
    hasher.update(data)


def _raw_bytes(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if tensor.layout != torch.strided:
        raise StorageError(
            f"tensor {name!r} has layout {tensor.layout}; only dense (strided) tensors can be "
            "stored. Convert it with .to_dense() first."
        )
    # contiguous() makes a view hash like its copy; viewing as uint8 reads the exact bytes
    # for every dtype, including ones numpy lacks such as bfloat16.
    flat = tensor.detach().to("cpu").resolve_conj().resolve_neg().contiguous().reshape(-1)
    return flat.view(torch.uint8)


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hashes a named set of tensors, independent of dict order, device and memory layout.

    Each tensor contributes its name, dtype, shape and raw bytes (length-prefixed), in sorted
    name order, so renaming, recasting, reshaping or changing one value changes the digest,
    while a non-contiguous view hashes like its contiguous copy.

    Args:
        tensors: Tensors keyed by name, on any device.

    Returns:
        The SHA-256 hex digest.

    Raises:
        StorageError: a name is not a string or a tensor is sparse or not a tensor.
    """
    bad_names = [name for name in tensors if not isinstance(name, str)]
    if bad_names:
        raise StorageError(f"tensor names must be strings; got {bad_names[0]!r}.")
    hasher = hashlib.sha256()
    hasher.update(len(tensors).to_bytes(8, "big"))
    for name in sorted(tensors):
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor):
            raise StorageError(
                f"{name!r} is a {type(tensor).__name__}, not a torch.Tensor; put non-tensor "
                "values in the metadata instead."
            )
        _update_framed(hasher, name.encode("utf-8"))
        _update_framed(hasher, str(tensor.dtype).encode("ascii"))
        hasher.update(tensor.dim().to_bytes(8, "big"))
        for size in tensor.shape:
            hasher.update(int(size).to_bytes(8, "big"))
        raw = _raw_bytes(name, tensor)
        hasher.update(raw.numel().to_bytes(8, "big"))
        hasher.update(raw.numpy().data)
    return hasher.hexdigest()


def meta_digest(meta: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the canonical JSON of ``meta``."""
    return hashlib.sha256(canonical_json(meta)).hexdigest()


def checkpoint_id_for(*, tensor_digest: str, meta: Mapping[str, Any]) -> str:
    """Derives a checkpoint id from its tensor digest and its metadata.

    Metadata is part of the id so that two checkpoints with equal weights but different
    lineage never share an id: deleting one must not delete the other's record.

    Args:
        tensor_digest: The result of :func:`tensor_digest` for the checkpoint's tensors.
        meta: The caller's metadata, exactly as stored.

    Returns:
        ``sha256(b"obliviate-checkpoint-v1\\0" + tensor_digest + b"\\0" + meta_digest)`` in
        hex, where both digests enter as ASCII hex.
    """
    hasher = hashlib.sha256(_CHECKPOINT_DOMAIN)
    hasher.update(tensor_digest.encode("ascii"))
    hasher.update(b"\0")
    hasher.update(meta_digest(meta).encode("ascii"))
    return hasher.hexdigest()
