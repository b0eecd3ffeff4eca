"""Evaluation data: a small frozen (features, labels) pair and where it comes from.

Evaluation never needs sample ids, only what a model sees, so it takes plain arrays. After an
exact forget the forgotten samples' features are purged from the workspace (GDPR), so a
forget set for research use comes from a user-supplied ``.npz`` file, and the retain and test
sets from the workspace's registered datasets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.errors import DataError

__all__ = ["EvalData", "load_eval_npz", "workspace_data"]


@dataclass(frozen=True, eq=False)
class EvalData:
    """Features (float32, first axis = samples) and int64 labels of one evaluation split.

    Raises:
        DataError: lengths differ, labels are not integral, or features are not finite.
    """

    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        features = np.ascontiguousarray(np.asarray(self.features, dtype=np.float32))
        raw = np.asarray(self.labels)
        if raw.size and not np.issubdtype(raw.dtype, np.integer):
            raise DataError(f"labels must be integers; got dtype {raw.dtype}.")
        labels = raw.astype(np.int64).reshape(-1)
        if features.ndim < 2 or len(features) != len(labels):
            raise DataError(
                f"features must be (N, ...) with N = len(labels) = {len(labels)}; "
                f"got shape {features.shape}."
            )
        if features.size and not np.all(np.isfinite(features)):
            raise DataError("features contain NaN or infinite values.")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: npt.NDArray[np.int64]) -> EvalData:
        """The samples at ``index``, in that order."""
        return EvalData(features=self.features[index], labels=self.labels[index])

    def digest(self) -> str:
        """SHA-256 of shapes and bytes: keys ensemble caches to the exact data."""
        h = hashlib.sha256()
        h.update(repr(self.features.shape).encode())
        h.update(self.features.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()


def load_eval_npz(path: str | Path) -> EvalData:
    """Reads an ``.npz`` with arrays ``features`` and ``labels``.

    Raises:
        DataError: the file is missing, unreadable, or lacks either array.
    """
    source = Path(path)
    try:
        with np.load(source, allow_pickle=False) as archive:
            missing = [k for k in ("features", "labels") if k not in archive.files]
            if missing:
                raise DataError(
                    f"{source} must contain arrays 'features' and 'labels'; missing {missing} "
                    f"(found {sorted(archive.files)})."
                )
            return EvalData(features=archive["features"], labels=archive["labels"])
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {source} as an .npz file: {exc}") from None


def workspace_data(
    *, workspace: Any, dataset: str, limit: int | None = None, seed: int = 0
) -> EvalData:
    """The active samples of a registered dataset (in registry order), optionally a subset.

    Args:
        workspace: an open :class:`~obliviate.workspace.Workspace`.
        dataset: the registered dataset's name.
        limit: keep at most this many samples, drawn with ``seed`` but kept in registry
            order (Jia et al.'s SVC attack takes the *first* retain samples).
        seed: the evaluation seed for that draw.

    Raises:
        DataError: the dataset has no active samples.
    """
    table = workspace.provenance.samples(dataset=dataset, status="active")
    if len(table) == 0:
        raise DataError(f"dataset {dataset!r} has no active samples to evaluate on.")
    index = np.arange(len(table))
    if limit is not None and limit < len(table):
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(len(table), size=limit, replace=False))
    features = workspace.features.read(dataset, table.chunks[index], table.rows[index])
    return EvalData(features=features, labels=table.labels[index])
