"""A content-addressed, write-once checkpoint store on any fsspec filesystem.

Exact unlearning rolls components back to earlier checkpoints, so a checkpoint that was
silently altered or half-written would make a "bit-for-bit" forget quietly wrong. Every
checkpoint is therefore addressed by a hash of its content, written atomically (temp name,
then rename), never overwritten, and re-verified on every read.

Layout under the store's root::

    <root>/<id[:2]>/<id>.safetensors   tensors (no pickle)
    <root>/<id[:2]>/<id>.json          sidecar; written last, so its presence marks completion
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec.core
import safetensors.torch
import torch
from fsspec.implementations.local import LocalFileSystem

from obliviate.errors import CorruptCheckpointError, StorageError
from obliviate.storage.canonical import canonical_json
from obliviate.storage.digest import checkpoint_id_for, tensor_digest

__all__ = ["Checkpoint", "CheckpointRef", "CheckpointStore"]

FORMAT_VERSION = 1
_KIND = "checkpoint"
_ID = re.compile(r"^[0-9a-f]{64}$")
_TENSORS_SUFFIX = ".safetensors"
_SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class CheckpointRef:
    """Where a stored checkpoint lives and what it hashes to.

    Attributes:
        checkpoint_id: 64 lowercase hex characters; a hash of the tensors and the metadata.
        url: The fsspec URL of the checkpoint's safetensors file.
        tensor_digest: :func:`~obliviate.storage.tensor_digest` of the tensors alone, so
            callers can tell "same weights, different lineage" apart from "same checkpoint".
        size_bytes: Size of the safetensors file in bytes.
    """

    checkpoint_id: str
    url: str
    tensor_digest: str
    size_bytes: int


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A checkpoint read back from the store, already verified against its id.

    Attributes:
        checkpoint_id: The id it was requested (and verified) under.
        tensors: The tensors, on CPU, with the dtypes and shapes they were stored with.
        meta: The caller's metadata as stored (tuples come back as lists).
        url: The fsspec URL of the checkpoint's safetensors file.
    """

    checkpoint_id: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    url: str


def _validate_id(checkpoint_id: object) -> str:
    # Ids become file names: anything but 64 lowercase hex could escape the root ("../").
    if not isinstance(checkpoint_id, str) or not _ID.match(checkpoint_id):
        raise StorageError(
            f"checkpoint ids are 64 lowercase hex characters (a SHA-256); got {checkpoint_id!r}."
        )
    return checkpoint_id


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable on POSIX; platforms that cannot open directories
    # (Windows) still get an atomic rename, just without this extra guarantee.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _tensors_to_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    # Clones give every entry its own storage: safetensors refuses tensors that share memory,
    # which tied weights in a state_dict do.
    plain = {
        name: tensor.detach().to("cpu").resolve_conj().resolve_neg().contiguous().clone()
        for name, tensor in tensors.items()
    }
    try:
        data = safetensors.torch.save(plain)
    except Exception as exc:  # safetensors raises its own error types for bad dtypes
        raise StorageError(f"the tensors cannot be written as safetensors: {exc}") from exc
    if not isinstance(data, bytes):  # pragma: no cover - guards a library contract
        raise StorageError("safetensors.torch.save did not return bytes.")
    return data


class CheckpointStore:
    """Content-addressed, write-once, verified checkpoint storage.

    Args:
        url: ``file:///abs/dir``, a plain local path, or any fsspec URL such as
            ``s3://bucket/prefix`` or ``memory://name``.

    Raises:
        StorageError: the URL is empty or its protocol is unknown or not installed.

    Example:
        >>> import torch
        >>> store = CheckpointStore("memory://doctest-store")
        >>> ref = store.put(tensors={"w": torch.zeros(2)}, meta={"step": 0})
        >>> store.get(ref.checkpoint_id).meta
        {'step': 0}
        >>> store.delete(ref.checkpoint_id)
    """

    def __init__(self, url: str) -> None:
        if not isinstance(url, str) or not url.strip():
            raise StorageError(f"a checkpoint store needs a URL or a local path; got {url!r}.")
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StorageError(
                f"cannot open checkpoint store {url!r}: {exc}. Use file:///abs/dir, a local "
                "path, or an fsspec URL whose filesystem package is installed."
            ) from exc
        self._fs: Any = fs
        self._local = isinstance(fs, LocalFileSystem)
        stripped = str(root).rstrip("/")
        self._root = stripped if stripped else str(root)
        self.url: str = str(fs.unstrip_protocol(self._root))

    def __repr__(self) -> str:
        return f"CheckpointStore({self.url!r})"

    # -- paths -------------------------------------------------------------------------

    def _path(self, checkpoint_id: str, suffix: str) -> str:
        return f"{self._root}/{checkpoint_id[:2]}/{checkpoint_id}{suffix}"

    def url_for(self, checkpoint_id: str) -> str:
        """The fsspec URL of a checkpoint's safetensors file (whether or not it exists)."""
        path = self._path(_validate_id(checkpoint_id), _TENSORS_SUFFIX)
        return str(self._fs.unstrip_protocol(path))

    def _sidecar_url(self, checkpoint_id: str) -> str:
        return str(self._fs.unstrip_protocol(self._path(checkpoint_id, _SIDECAR_SUFFIX)))

    # -- low-level I/O -----------------------------------------------------------------

    def _write_atomic(self, path: str, data: bytes) -> None:
        directory, name = path.rsplit("/", 1)
        temp = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            if self._local:
                self._write_local(directory, temp, path, data)
            else:
                self._write_remote(directory, temp, path, data)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"could not write {self._fs.unstrip_protocol(path)}: {exc}") from exc

    def _write_local(self, directory: str, temp: str, path: str, data: bytes) -> None:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_directory(directory)

    def _write_remote(self, directory: str, temp: str, path: str, data: bytes) -> None:
        # Object stores have no rename; fs.mv is a server-side copy + delete, so readers still
        # never see a partial object under the final key.
        with contextlib.suppress(OSError):
            self._fs.makedirs(directory, exist_ok=True)
        try:
            self._fs.pipe_file(temp, data)
            self._fs.mv(temp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self._fs.rm(temp)
            raise

    def _read(self, path: str) -> bytes:
        data = self._fs.cat_file(path)
        return bytes(data)

    def _exists(self, path: str) -> bool:
        try:
            return bool(self._fs.exists(path))
        except OSError as exc:
            raise StorageError(f"could not check {self._fs.unstrip_protocol(path)}: {exc}") from exc

    # -- public API --------------------------------------------------------------------

    def put(self, *, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> CheckpointRef:
        """Stores a checkpoint, or finds it already stored.

        Putting the same tensors with the same metadata again writes nothing and returns the
        same reference, so retries after a crash are safe.

        Args:
            tensors: Tensors by name, on any device; they are stored as contiguous CPU copies.
            meta: JSON-able metadata (see :func:`~obliviate.storage.canonical_json`), e.g.
                lineage; it is part of the id, so it must hold nothing non-deterministic such
                as timestamps unless those are meant to make the checkpoint distinct.

        Returns:
            The checkpoint's reference.

        Raises:
            StorageError: the tensors or metadata cannot be stored, or the write failed.
        """
        if not isinstance(meta, Mapping):
            raise StorageError(f"meta must be a mapping; got {type(meta).__name__}.")
        digest = tensor_digest(tensors)
        checkpoint_id = checkpoint_id_for(tensor_digest=digest, meta=meta)
        tensors_path = self._path(checkpoint_id, _TENSORS_SUFFIX)
        sidecar_path = self._path(checkpoint_id, _SIDECAR_SUFFIX)
        url = self.url_for(checkpoint_id)
        if self._exists(sidecar_path):
            try:
                size = int(self._fs.size(tensors_path))
            except OSError as exc:
                raise CorruptCheckpointError(
                    f"checkpoint {checkpoint_id} has a sidecar but its tensors file {url} "
                    f"cannot be read ({exc}); delete the checkpoint and put it again."
                ) from exc
            return CheckpointRef(checkpoint_id, url, digest, size)
        payload = _tensors_to_bytes(tensors)
        sidecar = canonical_json(
            {
                "kind": _KIND,
                "format_version": FORMAT_VERSION,
                "checkpoint_id": checkpoint_id,
                "tensor_digest": digest,
                "meta": meta,
                "torch_version": str(torch.__version__),
            }
        )
        self._write_atomic(tensors_path, payload)
        self._write_atomic(sidecar_path, sidecar)
        return CheckpointRef(checkpoint_id, url, digest, len(payload))

    def get(self, checkpoint_id: str) -> Checkpoint:
        """Reads a checkpoint and verifies it against its id.

        Args:
            checkpoint_id: The id returned by :meth:`put`.

        Returns:
            The verified checkpoint.

        Raises:
            StorageError: the id is malformed, or no completed checkpoint has it.
            CorruptCheckpointError: a file is unreadable or its content no longer hashes to
                the id; the message names the id and the file.
        """
        checkpoint_id = _validate_id(checkpoint_id)
        tensors_url = self.url_for(checkpoint_id)
        sidecar_url = self._sidecar_url(checkpoint_id)
        try:
            sidecar_bytes = self._read(self._path(checkpoint_id, _SIDECAR_SUFFIX))
        except FileNotFoundError:
            raise StorageError(
                f"no checkpoint {checkpoint_id} in {self.url} ({sidecar_url} does not exist; "
                "a put that never finished leaves no sidecar)."
            ) from None
        except OSError as exc:
            raise StorageError(f"could not read {sidecar_url}: {exc}") from exc
        meta, recorded_digest = self._parse_sidecar(checkpoint_id, sidecar_url, sidecar_bytes)
        try:
            payload = self._read(self._path(checkpoint_id, _TENSORS_SUFFIX))
        except FileNotFoundError:
            raise CorruptCheckpointError(
                f"checkpoint {checkpoint_id} is corrupt: its sidecar exists but its tensors "
                f"file {tensors_url} is missing."
            ) from None
        except OSError as exc:
            raise StorageError(f"could not read {tensors_url}: {exc}") from exc
        try:
            tensors = safetensors.torch.load(payload)
        except Exception as exc:  # safetensors raises its own, untyped error for bad files
            raise CorruptCheckpointError(
                f"checkpoint {checkpoint_id} is corrupt: {tensors_url} is not a readable "
                f"safetensors file ({exc})."
            ) from exc
        actual_digest = tensor_digest(tensors)
        id_matches = checkpoint_id_for(tensor_digest=actual_digest, meta=meta) == checkpoint_id
        if not id_matches and actual_digest != recorded_digest:
            raise CorruptCheckpointError(
                f"checkpoint {checkpoint_id} is corrupt: the tensors in {tensors_url} hash to "
                f"{actual_digest}, but its sidecar records {recorded_digest}."
            )
        if not id_matches:
            raise CorruptCheckpointError(
                f"checkpoint {checkpoint_id} is corrupt: the metadata in {sidecar_url} no "
                "longer hashes to the checkpoint id (the sidecar was edited)."
            )
        if actual_digest != recorded_digest:
            raise CorruptCheckpointError(
                f"checkpoint {checkpoint_id} is corrupt: its sidecar {sidecar_url} records the "
                f"tensor digest {recorded_digest}, but the tensors hash to {actual_digest}."
            )
        return Checkpoint(checkpoint_id, dict(tensors), meta, tensors_url)

    def _parse_sidecar(
        self, checkpoint_id: str, sidecar_url: str, data: bytes
    ) -> tuple[dict[str, Any], str]:
        def corrupt(why: str) -> CorruptCheckpointError:
            return CorruptCheckpointError(
                f"checkpoint {checkpoint_id} is corrupt: its sidecar {sidecar_url} {why}."
            )

        try:
            sidecar = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise corrupt(f"is not valid JSON ({exc})") from exc
        if not isinstance(sidecar, dict) or sidecar.get("kind") != _KIND:
            raise corrupt(f"is not a checkpoint sidecar (expected kind {_KIND!r})")
        version = sidecar.get("format_version")
        if type(version) is not int:
            raise corrupt(f"has format_version {version!r}, not an integer")
        if version != FORMAT_VERSION:
            raise StorageError(
                f"checkpoint {checkpoint_id} has format_version {version}; this obliviate reads "
                f"version {FORMAT_VERSION}. Upgrade obliviate to read it."
            )
        meta = sidecar.get("meta")
        recorded_digest = sidecar.get("tensor_digest")
        if not isinstance(meta, dict) or not isinstance(recorded_digest, str):
            raise corrupt("lacks its 'meta' object or its 'tensor_digest' string")
        return meta, recorded_digest

    def exists(self, checkpoint_id: str) -> bool:
        """Whether a completed checkpoint with this id is stored (its content is not checked)."""
        return self._exists(self._path(_validate_id(checkpoint_id), _SIDECAR_SUFFIX))

    def delete(self, checkpoint_id: str) -> None:
        """Removes a checkpoint's files; deleting a missing checkpoint is not an error.

        The sidecar goes first so that an interrupted delete leaves an incomplete checkpoint,
        which reads as missing, rather than a sidecar pointing at nothing.
        """
        checkpoint_id = _validate_id(checkpoint_id)
        for suffix in (_SIDECAR_SUFFIX, _TENSORS_SUFFIX):
            path = self._path(checkpoint_id, suffix)
            try:
                self._fs.rm_file(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(
                    f"could not delete {self._fs.unstrip_protocol(path)}: {exc}"
                ) from exc

    def ids(self) -> list[str]:
        """Ids of all completed checkpoints, sorted."""
        try:
            paths = self._fs.glob(f"{self._root}/*/*{_SIDECAR_SUFFIX}")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"could not list {self.url}: {exc}") from exc
        found = []
        for path in paths:
            parent, name = str(path).rstrip("/").rsplit("/", 2)[-2:]
            stem = name[: -len(_SIDECAR_SUFFIX)]
            if _ID.match(stem) and parent == stem[:2]:
                found.append(stem)
        return sorted(found)
