"""Checkpoint storage: content-addressed safetensors + JSON sidecars on any fsspec filesystem.

Exact unlearning is only as trustworthy as the checkpoints it rolls back to, so checkpoints
are addressed by a hash of their content, written atomically and once, verified on every
read, and never pickled. :func:`pack_training_state` turns a model, optimizer, scheduler and
RNG state into what :meth:`CheckpointStore.put` stores, so training resumes bit-for-bit.
"""

from __future__ import annotations

from obliviate.storage.canonical import canonical_json
from obliviate.storage.digest import checkpoint_id_for, meta_digest, tensor_digest
from obliviate.storage.store import Checkpoint, CheckpointRef, CheckpointStore
from obliviate.storage.training_state import (
    RNG_KEY,
    pack_training_state,
    unpack_training_state,
)

__all__ = [
    "RNG_KEY",
    "Checkpoint",
    "CheckpointRef",
    "CheckpointStore",
    "canonical_json",
    "checkpoint_id_for",
    "meta_digest",
    "pack_training_state",
    "tensor_digest",
    "unpack_training_state",
]
