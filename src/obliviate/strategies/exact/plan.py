"""The placement plan of a model: which samples it trains on, and where each one sits.

The plan is written once per ``fit`` or ``add`` (append-only files under the model's
directory) and never rewritten: deletions do not re-place anyone, so the plan of survivors
is exactly what a fit from scratch without the deleted samples would compute.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from obliviate.errors import NotFittedError

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """Placement of a model's training samples, sorted by sample primary key."""

    pk: npt.NDArray[np.int64]
    shard: npt.NDArray[np.int64]
    slice: npt.NDArray[np.int64]
    order_key: npt.NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.pk)

    @property
    def last_slice(self) -> int:
        """Index of the last slice any sample sits in."""
        return int(self.slice.max()) if len(self) else -1

    def lookup(self, pks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Positions in the plan of ``pks``; -1 for samples the model never trained on."""
        pos = np.searchsorted(self.pk, pks)
        pos = np.clip(pos, 0, max(len(self.pk) - 1, 0))
        found = (self.pk[pos] == pks) if len(self.pk) else np.zeros(len(pks), dtype=bool)
        return np.where(found, pos, -1).astype(np.int64)

    @staticmethod
    def load(model_dir: Path) -> Plan:
        """Reads and merges every plan part written for the model."""
        parts = sorted(model_dir.glob("plan-*.npz"))
        if not parts:
            raise NotFittedError(
                f"the model at {model_dir} has no placement plan; it was never fitted."
            )
        arrays: dict[str, list[npt.NDArray[np.generic]]] = {
            k: [] for k in ("pk", "shard", "slice", "order_key")
        }
        for part in parts:
            with np.load(part) as data:
                for key in arrays:
                    arrays[key].append(data[key])
        merged = {k: np.concatenate(v) for k, v in arrays.items()}
        order = np.argsort(merged["pk"], kind="stable")
        return Plan(
            pk=merged["pk"][order].astype(np.int64),
            shard=merged["shard"][order].astype(np.int64),
            slice=merged["slice"][order].astype(np.int64),
            order_key=merged["order_key"][order].astype(np.uint64),
        )

    def save_part(self, model_dir: Path) -> Path:
        """Writes this plan as the next part, atomically."""
        model_dir.mkdir(parents=True, exist_ok=True)
        index = len(list(model_dir.glob("plan-*.npz")))
        path = model_dir / f"plan-{index:04d}.npz"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-plan-", suffix=".npz", dir=model_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh, pk=self.pk, shard=self.shard, slice=self.slice, order_key=self.order_key
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
