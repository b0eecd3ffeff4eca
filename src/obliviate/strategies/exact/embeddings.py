"""A per-checkpoint cache of shard embeddings, joined on sample keys, never on row position.

One file per shard checkpoint holds the sorted primary keys of the samples it has embedded
and the matching rows. Every read looks rows up by key, so two shards' matrices can never
be misaligned (the SISPA reference code concatenated matrices built from independently
shuffled loaders, so row ``i`` of one shard was a different image than row ``i`` of the
next). Files are content-addressed by checkpoint id: a retrained shard has a new id and so
a fresh file, while unaffected shards keep theirs.

Embeddings are derived personal data: :meth:`EmbeddingCache.purge` removes the rows of
deleted samples and :meth:`EmbeddingCache.prune` drops the files of checkpoints no longer
served.

Loaded files are memoised in memory, keyed by the file's identity (inode, size, mtime), so a
forget does not re-read every unaffected shard's file; a file another process rewrote (a
purge elsewhere) is seen as changed and read again, so a stale memo can never write purged
rows back.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from obliviate.errors import StorageError

__all__ = ["EmbeddingCache"]

_ID = re.compile(r"^[0-9a-f]{64}$")
Compute = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]
_Rows = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class EmbeddingCache:
    """Embeddings keyed by (checkpoint id, sample primary key), stored under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._memo: dict[Path, tuple[tuple[int, int, int], _Rows]] = {}

    def _path(self, checkpoint_id: str) -> Path:
        if not _ID.match(checkpoint_id):
            raise StorageError(f"embedding cache keys are checkpoint ids; got {checkpoint_id!r}.")
        return self.root / f"{checkpoint_id}.npz"

    def _load(self, path: Path) -> _Rows:
        identity = _identity(path)
        if identity is None:
            self._memo.pop(path, None)
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        memo = self._memo.get(path)
        if memo is not None and memo[0] == identity:
            return memo[1]
        with np.load(path) as data:
            rows = (data["pk"].astype(np.int64), data["emb"].astype(np.float32))
        self._memo[path] = (identity, rows)
        return rows

    def _save(self, path: Path, pk: npt.NDArray[np.int64], emb: npt.NDArray[np.float32]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-emb-", suffix=".npz", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, pk=pk, emb=emb)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        identity = _identity(path)
        if identity is not None:
            self._memo[path] = (identity, (pk, emb))

    def keys(self, checkpoint_id: str) -> npt.NDArray[np.int64]:
        """Sample keys cached for ``checkpoint_id`` (sorted)."""
        return self._load(self._path(checkpoint_id))[0]

    def get(
        self, *, checkpoint_id: str, pks: npt.NDArray[np.int64], compute: Compute
    ) -> tuple[npt.NDArray[np.float32], int]:
        """Rows for ``pks`` in the order given, computing and storing the missing ones.

        Args:
            checkpoint_id: the shard checkpoint whose model made the embeddings.
            pks: the samples wanted (unique).
            compute: embeds the given (sorted) pks with that checkpoint's model.

        Returns:
            ``(rows, computed)``: the ``(len(pks), dim)`` matrix and how many were computed.
        """
        wanted = np.asarray(pks, dtype=np.int64)
        path = self._path(checkpoint_id)
        stored_pk, stored = self._load(path)
        pos = np.searchsorted(stored_pk, wanted)
        hit = pos < len(stored_pk)
        hit[hit] = stored_pk[pos[hit]] == wanted[hit]
        if hit.all():
            return stored[pos], 0
        missing = np.unique(wanted[~hit])
        if len(missing):
            fresh = np.asarray(compute(missing), dtype=np.float32)
            if fresh.shape[0] != len(missing):
                raise StorageError(
                    f"compute returned {fresh.shape[0]} embeddings for {len(missing)} samples."
                )
            if len(stored_pk):
                merged_pk = np.concatenate([stored_pk, missing])
                merged = np.concatenate([stored, fresh])
            else:
                merged_pk, merged = missing, fresh
            order = np.argsort(merged_pk, kind="stable")
            stored_pk, stored = merged_pk[order], merged[order]
            self._save(path, stored_pk, stored)
        pos = np.searchsorted(stored_pk, wanted)
        if len(wanted) and not np.array_equal(stored_pk[pos], wanted):
            raise StorageError(f"embedding cache {path} does not hold every sample asked for.")
        return stored[pos], int(len(missing))

    def purge(self, pks: npt.NDArray[np.int64]) -> int:
        """Removes the rows of ``pks`` from every cached file; returns rows removed."""
        gone = np.asarray(pks, dtype=np.int64)
        removed = 0
        for path in sorted(self.root.glob("*.npz")) if self.root.exists() else []:
            stored_pk, stored = self._load(path)
            keep = ~np.isin(stored_pk, gone)
            if not keep.all():
                removed += int((~keep).sum())
                self._save(path, stored_pk[keep], stored[keep])
        return removed

    def prune(self, keep: Iterable[str]) -> int:
        """Deletes the files of every checkpoint not in ``keep``; returns files deleted."""
        wanted = {f"{c}.npz" for c in keep}
        dropped = 0
        for path in sorted(self.root.glob("*.npz")) if self.root.exists() else []:
            if path.name not in wanted:
                path.unlink(missing_ok=True)
                self._memo.pop(path, None)
                dropped += 1
        return dropped
