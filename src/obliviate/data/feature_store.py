"""The workspace's copy of registered features, one ``.npy`` chunk per registration.

Retraining needs the features of surviving samples long after registration, so the
workspace keeps them. Chunks are memory-mapped, so a shard retrain reads only its own rows
(data loading stays proportional to the work). Deleted rows are overwritten with zeros:
once forgotten, a sample's features are gone from the workspace too.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from obliviate._hashing import sha256_hex
from obliviate.errors import DataError, StorageError

__all__ = ["FeatureStore"]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class FeatureStore:
    """Append-only, memory-mapped feature chunks under ``root/<dataset>/<chunk>.npy``.

    Args:
        root: directory holding the chunks.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, dataset: str, chunk: str) -> Path:
        for part, what in ((dataset, "dataset"), (chunk, "chunk")):
            if not _SAFE.match(part):
                raise DataError(
                    f"{what} names may use letters, digits, '_', '.', '-' only; got {part!r}."
                )
        return self.root / dataset / f"{chunk}.npy"

    def write_chunk(self, dataset: str, features: npt.NDArray[np.float32]) -> str:
        """Writes a new chunk atomically and returns its name (derived from its content)."""
        data = np.ascontiguousarray(features, dtype=np.float32)
        chunk = f"c{len(data)}-{sha256_hex(str(data.shape), data.tobytes())[:16]}"
        path = self._path(dataset, chunk)
        if path.exists():
            return chunk
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return chunk

    def remove_chunk(self, dataset: str, chunk: str) -> None:
        """Deletes a chunk (used to undo a registration whose database write failed)."""
        self._path(dataset, chunk).unlink(missing_ok=True)

    def read(
        self, dataset: str, chunks: npt.NDArray[np.str_], rows: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Features for the given (chunk, row) pairs, in the order given."""
        if len(chunks) == 0:
            raise DataError("no rows requested from the feature store.")
        names = np.unique(chunks)
        first = self._open(dataset, str(names[0]))
        out = np.empty((len(rows), *first.shape[1:]), dtype=np.float32)
        for name in names:
            mask = chunks == name
            array = first if name == names[0] else self._open(dataset, str(name))
            out[mask] = array[rows[mask]]
        return out

    def purge(
        self, dataset: str, chunks: npt.NDArray[np.str_], rows: npt.NDArray[np.int64]
    ) -> None:
        """Overwrites the features of deleted samples with zeros, durably."""
        for name in np.unique(chunks):
            path = self._path(dataset, str(name))
            if not path.exists():
                continue
            array = np.load(path, mmap_mode="r+")
            array[rows[chunks == name]] = 0.0
            array.flush()
            del array

    def _open(self, dataset: str, chunk: str) -> npt.NDArray[np.float32]:
        path = self._path(dataset, chunk)
        try:
            array: npt.NDArray[np.float32] = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise StorageError(
                f"feature chunk {chunk!r} of dataset {dataset!r} is missing at {path}; "
                "the workspace's features folder was altered."
            ) from None
        return array
