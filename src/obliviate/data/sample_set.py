"""SampleSet: features, labels and stable ids, validated once at the door.

Everything downstream (provenance, sharding, training, deletion) is keyed by ``sample_ids``,
never by row position, because positions shift when samples are deleted and ids do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.errors import DataError, UnknownSampleError

__all__ = ["SampleSet"]

_PREVIEW = 5


def _preview(values: Iterable[Any]) -> str:
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:_PREVIEW])
    more = f", ... ({len(items)} in all)" if len(items) > _PREVIEW else ""
    return shown + more


def _as_id_array(values: Sequence[Any] | npt.NDArray[Any], what: str) -> npt.NDArray[np.str_]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{what} must be one-dimensional; got shape {array.shape}.")
    if array.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise DataError(f"{what} are missing (NaN) at rows {_preview(bad.tolist())}.")
        if np.any(array != np.round(array)):
            raise DataError(f"{what} must be strings or integers; got non-integral floats.")
        array = array.astype(np.int64)
    if array.dtype.kind == "O":
        missing = [i for i, v in enumerate(array.tolist()) if v is None or v != v]
        if missing:
            raise DataError(f"{what} are missing (None/NaN) at rows {_preview(missing)}.")
    strings = array.astype(str)
    empty = np.flatnonzero(np.char.str_len(strings) == 0)
    if empty.size:
        raise DataError(f"{what} are empty strings at rows {_preview(empty.tolist())}.")
    return strings


@dataclass(frozen=True, eq=False)
class SampleSet:
    """A labelled dataset whose rows carry stable sample ids and optional subject ids.

    Build one with :meth:`from_arrays`, which validates and normalises dtypes. Direct
    construction validates too, so a ``SampleSet`` that exists is always well-formed.

    Attributes:
        features: float32 array of shape ``(n, *feature_shape)``, finite.
        labels: int64 array of shape ``(n,)`` with values in ``[0, num_classes)``.
        sample_ids: unique, non-empty strings of shape ``(n,)``.
        subject_ids: the data subject of each row (strings), or ``None`` when unknown.
        num_classes: number of classes the labels index into.
        name: a human-readable name, used as the default dataset name on registration.

    Example:
        >>> import numpy as np
        >>> s = SampleSet.from_arrays(features=np.zeros((3, 2)), labels=[0, 1, 1],
        ...                           sample_ids=["a", "b", "c"])
        >>> len(s.without(["b"]))
        2
    """

    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    sample_ids: npt.NDArray[np.str_]
    subject_ids: npt.NDArray[np.str_] | None
    num_classes: int
    name: str = "samples"

    def __post_init__(self) -> None:
        n = self.features.shape[0] if self.features.ndim else 0
        if self.features.ndim < 2:
            raise DataError(
                f"features must have shape (n, ...) with at least 2 dimensions; "
                f"got shape {self.features.shape}."
            )
        if n == 0:
            raise DataError("a SampleSet needs at least one sample; got 0 rows.")
        lengths = {
            "features": n,
            "labels": len(self.labels),
            "sample_ids": len(self.sample_ids),
        }
        if self.subject_ids is not None:
            lengths["subject_ids"] = len(self.subject_ids)
        if len(set(lengths.values())) != 1:
            detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise DataError(f"mismatched lengths: {detail}; every column needs one row per sample.")
        if self.features.dtype != np.float32:
            raise DataError(f"features must be float32; got {self.features.dtype}.")
        if not np.all(np.isfinite(self.features)):
            rows = np.flatnonzero(~np.isfinite(self.features.reshape(n, -1)).all(axis=1))
            raise DataError(
                f"features contain NaN or infinite values at rows {_preview(rows.tolist())} "
                f"(sample ids {_preview(self.sample_ids[rows].tolist())})."
            )
        if self.labels.dtype != np.int64 or self.labels.ndim != 1:
            raise DataError(f"labels must be a 1-D int64 array; got {self.labels.dtype}.")
        if self.num_classes < 1:
            raise DataError(f"num_classes must be at least 1; got {self.num_classes}.")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
        if bad.size:
            raise DataError(
                f"labels must lie in [0, {self.num_classes}); rows {_preview(bad.tolist())} have "
                f"labels {_preview(self.labels[bad].tolist())}."
            )
        unique, counts = np.unique(self.sample_ids, return_counts=True)
        if unique.size != n:
            dupes = unique[counts > 1].tolist()
            raise DataError(f"duplicate sample ids: {_preview(dupes)}; sample ids must be unique.")

    @classmethod
    def from_arrays(
        cls,
        *,
        features: npt.ArrayLike,
        labels: npt.ArrayLike,
        sample_ids: Sequence[Any] | npt.NDArray[Any] | None = None,
        subject_ids: Sequence[Any] | npt.NDArray[Any] | None = None,
        num_classes: int | None = None,
        name: str = "samples",
        id_prefix: str | None = None,
    ) -> SampleSet:
        """Validates raw arrays and builds a SampleSet.

        Args:
            features: array-like of shape ``(n, ...)``; converted to float32.
            labels: integer class labels of shape ``(n,)``.
            sample_ids: stable ids; when omitted, ids are ``f"{id_prefix or name}-{row}"``.
            subject_ids: the data subject of each row, or ``None``.
            num_classes: defaults to ``max(labels) + 1``.
            name: dataset name.
            id_prefix: prefix for generated ids.

        Raises:
            DataError: naming the first problem found.
        """
        try:
            feats = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise DataError(f"features must be numeric; could not convert them: {exc}.") from None
        raw_labels = np.asarray(labels)
        if raw_labels.ndim != 1:
            raise DataError(f"labels must be one-dimensional; got shape {raw_labels.shape}.")
        if raw_labels.dtype.kind == "O":
            missing = [i for i, v in enumerate(raw_labels.tolist()) if v is None or v != v]
            if missing:
                raise DataError(f"labels are missing at rows {_preview(missing)}.")
            try:
                raw_labels = raw_labels.astype(np.float64)
            except (TypeError, ValueError):
                raise DataError("labels must be integers; got non-numeric values.") from None
        if raw_labels.dtype.kind == "f":
            nan_rows = np.flatnonzero(~np.isfinite(raw_labels))
            if nan_rows.size:
                raise DataError(f"labels are missing (NaN) at rows {_preview(nan_rows.tolist())}.")
            if np.any(raw_labels != np.round(raw_labels)):
                raise DataError("labels must be integers; got non-integral values.")
        elif raw_labels.dtype.kind not in "iub":
            raise DataError(f"labels must be integers; got dtype {raw_labels.dtype}.")
        label_array = raw_labels.astype(np.int64)
        n = feats.shape[0] if feats.ndim else 0
        if sample_ids is None:
            prefix = id_prefix or name
            ids = np.array([f"{prefix}-{i}" for i in range(n)])
        else:
            ids = _as_id_array(sample_ids, "sample ids")
        subjects = None if subject_ids is None else _as_id_array(subject_ids, "subject ids")
        if num_classes is None:
            num_classes = int(label_array.max()) + 1 if label_array.size else 1
        return cls(
            features=feats,
            labels=label_array,
            sample_ids=ids,
            subject_ids=subjects,
            num_classes=int(num_classes),
            name=name,
        )

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample's features."""
        return tuple(int(d) for d in self.features.shape[1:])

    def subset(self, rows: npt.ArrayLike) -> SampleSet:
        """The rows at ``rows`` (positions), in that order."""
        index = np.asarray(rows, dtype=np.int64)
        return SampleSet(
            features=self.features[index],
            labels=self.labels[index],
            sample_ids=self.sample_ids[index],
            subject_ids=None if self.subject_ids is None else self.subject_ids[index],
            num_classes=self.num_classes,
            name=self.name,
        )

    def rows_of(self, sample_ids: Iterable[str]) -> npt.NDArray[np.int64]:
        """Row positions of ``sample_ids``.

        Raises:
            UnknownSampleError: some ids are not in this set.
        """
        wanted = np.asarray(list(sample_ids), dtype=str)
        order = np.argsort(self.sample_ids)
        sorted_ids = self.sample_ids[order]
        pos = np.searchsorted(sorted_ids, wanted)
        pos = np.clip(pos, 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == wanted
        if not np.all(found):
            raise UnknownSampleError(
                f"sample ids not in {self.name!r}: {_preview(wanted[~found].tolist())}."
            )
        return order[pos].astype(np.int64)

    def select(self, sample_ids: Iterable[str]) -> SampleSet:
        """The rows with ``sample_ids``, in the order given."""
        return self.subset(self.rows_of(sample_ids))

    def without(self, sample_ids: Iterable[str]) -> SampleSet:
        """Every row except ``sample_ids`` (which must all be present), order preserved."""
        drop = self.rows_of(sample_ids)
        keep = np.setdiff1d(np.arange(len(self)), drop)
        return self.subset(keep)

    def content_hashes(self) -> list[str]:
        """SHA-256 of each row's feature bytes, shape and label (hex).

        Hashing the label too means a relabelled sample is a different sample.
        """
        shape = ",".join(str(d) for d in self.feature_shape).encode()
        out = []
        for row, label in zip(self.features, self.labels, strict=True):
            digest = hashlib.sha256()
            digest.update(b"float32:" + shape + b":")
            digest.update(np.ascontiguousarray(row).tobytes())
            digest.update(b":label:" + str(int(label)).encode())
            out.append(digest.hexdigest())
        return out
