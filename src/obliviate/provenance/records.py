"""Frozen results returned by the provenance registry.

Callers get plain values, never live ORM objects, so nothing they hold can lazily query a
closed database or be mutated into disagreeing with what was committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.errors import LineageError

__all__ = [
    "CheckpointRecord",
    "DatasetRecord",
    "DeletionRecord",
    "ModelRecord",
    "Resolution",
    "SampleTable",
    "VerifyReport",
    "VersionRecord",
]


@dataclass(frozen=True)
class DatasetRecord:
    """A registered dataset and how many of its samples are active or deleted.

    Attributes:
        name: the dataset's unique name.
        num_classes: number of classes its labels index into.
        feature_shape: shape of one sample's features.
        deletable: ``False`` for e.g. declared public pretraining data, which refuses deletions.
        num_active: samples still usable for training.
        num_deleted: samples removed by deletion requests.
    """

    name: str
    num_classes: int
    feature_shape: tuple[int, ...]
    deletable: bool
    num_active: int
    num_deleted: int


@dataclass(frozen=True, eq=False)
class SampleTable:
    """Samples of one dataset as parallel numpy arrays, ordered by primary key.

    Column arrays rather than row objects, because training code selects, shards and orders
    tens of thousands of samples at a time.

    Attributes:
        pk: int64 primary keys (what checkpoints and deletions refer to).
        sample_ids: the stable sample ids.
        subject_ids: the data subject of each sample, ``""`` where none was given.
        labels: int64 labels.
        chunks: the feature-store chunk holding each sample's features.
        rows: int64 row of each sample within its chunk.
        status: ``"active"`` or ``"deleted"``.
    """

    pk: npt.NDArray[np.int64]
    sample_ids: npt.NDArray[np.str_]
    subject_ids: npt.NDArray[np.str_]
    labels: npt.NDArray[np.int64]
    chunks: npt.NDArray[np.str_]
    rows: npt.NDArray[np.int64]
    status: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.pk.shape[0])


@dataclass(frozen=True)
class ModelRecord:
    """A registered model.

    Attributes:
        name: the model's unique name.
        strategy: the registered name of the strategy that trains it.
        config: the strategy configuration, as JSON-compatible values.
        dataset: the name of the dataset it is trained on.
        created_at: when it was registered (UTC).
    """

    name: str
    strategy: str
    config: Mapping[str, Any]
    dataset: str
    created_at: datetime


@dataclass(frozen=True)
class CheckpointRecord:
    """A recorded checkpoint of one model component.

    Attributes:
        checkpoint_id: the checkpoint's content hash (64 hex characters).
        model: the model's name.
        component: the component's name, e.g. ``"shard-3"``.
        parent_id: the checkpoint training continued from, or ``None``.
        storage_url: where the checkpoint store keeps it.
        lineage_hash: SHA-256 of the ordered sample ids that influenced it, parents included.
        num_samples_seen: how many samples it has seen, parents included.
        meta: free-form JSON metadata.
        created_at: when it was recorded (UTC).
    """

    checkpoint_id: str
    model: str
    component: str
    parent_id: str | None
    storage_url: str
    lineage_hash: str
    num_samples_seen: int
    meta: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class VersionRecord:
    """An immutable model version: which checkpoint serves each component.

    Attributes:
        model: the model's name.
        number: 1, 2, 3, ... per model.
        content_hash: SHA-256 over canonical JSON of model name, components and details.
        kind: how it came about, e.g. ``"trained"``, ``"rolled_back"``, ``"retrained"``.
        status: ``"candidate"``, ``"active"`` or ``"retired"``.
        components: component name to checkpoint id, ``None`` where excluded from serving.
        details: free-form JSON details.
        created_at: when it was created (UTC).
        activated_at: when it was last activated (UTC), or ``None``.
        parent_version: the number of the version it was derived from, or ``None``.
    """

    model: str
    number: int
    content_hash: str
    kind: str
    status: str
    components: Mapping[str, str | None]
    details: Mapping[str, Any]
    created_at: datetime
    activated_at: datetime | None
    parent_version: int | None = None


@dataclass(frozen=True)
class DeletionRecord:
    """A deletion request and how far it has got.

    Attributes:
        id: the request's id.
        dataset: the dataset the samples belong to.
        model: the model the deletion is applied to, or ``None``.
        status: ``"pending"``, ``"rolled_back"``, ``"completed"``, ``"failed"`` or ``"noop"``.
        reason: why the deletion was requested.
        requested_at: when it was committed (UTC).
        completed_at: when it reached a final status (UTC), or ``None``.
        num_samples: how many samples it deleted.
        from_version: the model's active version number when it was requested.
        rolled_back_version: the version number it rolled back to, if any.
        to_version: the version number that serves after the deletion, if any.
        details: free-form JSON details.
    """

    id: int
    dataset: str
    model: str | None
    status: str
    reason: str
    requested_at: datetime
    completed_at: datetime | None
    num_samples: int
    from_version: int | None
    rolled_back_version: int | None
    to_version: int | None
    details: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class Resolution:
    """What a set of requested sample and subject ids maps to.

    Reported rather than raised, so callers decide whether unknown or already-deleted ids
    are an error (an API request) or fine (an idempotent retry).

    Attributes:
        active_pks: sorted int64 primary keys of the active samples to delete.
        active_ids: their sample ids, in the same order.
        already_deleted_ids: requested samples (directly or through a subject) that an
            earlier deletion removed, in primary-key order.
        unknown_ids: requested sample ids that were never registered, then requested subject
            ids that have no samples at all, each in request order.
    """

    active_pks: npt.NDArray[np.int64]
    active_ids: list[str]
    already_deleted_ids: list[str]
    unknown_ids: list[str]


@dataclass(frozen=True)
class VerifyReport:
    """Whether a model version is free of deleted samples (invariant 2).

    Attributes:
        model: the model's name.
        version: the version number checked.
        ok: ``True`` iff no checkpoint in the version's lineage saw a deleted sample.
        deleted_seen: the deleted sample ids in the version's lineage.
        components_with_deleted: component name to the deleted sample ids in its lineage.
        deleted_seen_pks: primary keys of ``deleted_seen``, in the same order.
    """

    model: str
    version: int
    ok: bool
    deleted_seen: list[str]
    components_with_deleted: dict[str, list[str]] = field(default_factory=dict)
    deleted_seen_pks: list[int] = field(default_factory=list)

    def raise_if_failed(self) -> None:
        """Raises if the version has seen deleted samples, for callers that must not go on.

        Raises:
            LineageError: naming the components and up to five sample ids per component.
        """
        if self.ok:
            return
        parts = []
        for component, ids in sorted(self.components_with_deleted.items()):
            shown = ", ".join(repr(i) for i in ids[:5])
            more = f", ... ({len(ids)} in all)" if len(ids) > 5 else ""
            parts.append(f"{component}: {shown}{more}")
        raise LineageError(
            f"model {self.model!r} version {self.version} has seen "
            f"{len(self.deleted_seen)} deleted sample(s) ({'; '.join(parts)}); retrain or "
            "roll back the affected components before serving it."
        )
