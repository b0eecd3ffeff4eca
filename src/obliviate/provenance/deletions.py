"""Deletion requests: marking samples deleted and tracking the request to completion.

A request is committed, with its samples marked deleted, in one transaction before anyone
acknowledges it (invariant 4). From then on no training run can pick those samples up, and
the request record tracks how the model was brought back into compliance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy.typing as npt
import sqlalchemy as sa

from obliviate.errors import (
    AlreadyDeletedError,
    ConfigError,
    ProvenanceError,
    UnknownSampleError,
)
from obliviate.provenance import lookups
from obliviate.provenance._bulk import bulk_insert
from obliviate.provenance._util import (
    IN_CHUNK,
    as_pk_array,
    canonical_json,
    chunks,
    inserted_pk,
    preview,
)
from obliviate.provenance.records import DeletionRecord
from obliviate.provenance.schema import (
    DELETION_STATUSES,
    Dataset,
    Deletion,
    DeletionSample,
    Model,
    Sample,
)

__all__ = [
    "FINAL_STATUSES",
    "begin_deletion",
    "deletion_records",
    "deletion_sample_ids",
    "update_deletion",
]

# Statuses after which a request is closed; 'failed' stays open so the work can be retried.
FINAL_STATUSES = ("completed", "noop")
_STAMPED = ("completed", "failed", "noop")


def begin_deletion(
    conn: sa.Connection,
    *,
    dataset: str,
    sample_pks: Sequence[int] | npt.NDArray[Any],
    model: str | None,
    reason: str,
    from_version: int | None,
    details: Mapping[str, Any] | None,
    now: datetime,
) -> int:
    """Marks ``sample_pks`` deleted and records the request; returns the request id.

    Raises:
        ProvenanceError: the dataset refuses deletions, the model is trained on another
            dataset, or ``from_version`` is given without a model or does not exist.
        UnknownSampleError: some pks are not samples of ``dataset``.
        AlreadyDeletedError: some samples are not active; nothing is written.
        ConfigError: malformed arguments.
    """
    if not isinstance(reason, str):
        raise ConfigError(f"reason must be a string; got {reason!r}.")
    detail_map = _details(details)
    pks = as_pk_array(sample_pks, what="sample_pks")
    data = lookups.get_dataset(conn, dataset)
    if not data.deletable:
        raise ProvenanceError(
            f"dataset {dataset!r} was registered as not deletable (e.g. public pretraining "
            "data), so it cannot honour deletion requests."
        )
    model_id = None
    from_id = None
    if model is not None:
        owner = lookups.get_model(conn, model)
        if owner.dataset_id != data.id:
            raise ProvenanceError(
                f"model {model!r} is not trained on dataset {dataset!r}; pass the model that "
                "was trained on it, or model=None."
            )
        model_id = owner.id
        if from_version is not None:
            from_id = lookups.version_id(conn, owner, from_version)
    elif from_version is not None:
        raise ProvenanceError("from_version needs a model; pass model= as well.")

    pk_list = pks.tolist()
    _require_active(conn, dataset_id=data.id, dataset=dataset, pks=pk_list)
    marked = 0
    for part in chunks(pk_list, IN_CHUNK):
        result = conn.execute(
            sa.update(Sample)
            .where(Sample.id.in_(part), Sample.dataset_id == data.id, Sample.status == "active")
            .values(status="deleted", deleted_at=now)
        )
        marked += result.rowcount
    if marked != len(pk_list):
        # Only reachable if another writer deleted some of them since the check above.
        raise AlreadyDeletedError(
            f"{len(pk_list) - marked} of the samples were deleted by a concurrent request; "
            "nothing was written. Resolve the request again and retry."
        )
    result = conn.execute(
        sa.insert(Deletion).values(
            dataset_id=data.id,
            model_id=model_id,
            status="pending",
            reason=reason,
            requested_at=now,
            completed_at=None,
            num_samples=len(pk_list),
            from_version_id=from_id,
            rolled_back_version_id=None,
            to_version_id=None,
            details=detail_map,
        )
    )
    deletion_id = inserted_pk(result)
    rows = [{"deletion_id": deletion_id, "sample_pk": pk} for pk in pk_list]
    bulk_insert(conn, DeletionSample, rows)
    return deletion_id


def _details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if details is not None and not isinstance(details, Mapping):
        raise ConfigError(f"details must be a mapping or None; got {type(details).__name__}.")
    detail_map = dict(details or {})
    canonical_json(detail_map, what="deletion details")
    return detail_map


def _require_active(conn: sa.Connection, *, dataset_id: int, dataset: str, pks: list[int]) -> None:
    status: dict[int, tuple[str, str]] = {}
    for part in chunks(pks, IN_CHUNK):
        stmt = sa.select(Sample.id, Sample.sample_id, Sample.status).where(
            Sample.id.in_(part), Sample.dataset_id == dataset_id
        )
        for pk, sample_id, state in conn.execute(stmt):
            status[int(pk)] = (str(sample_id), str(state))
    unknown = [pk for pk in pks if pk not in status]
    if unknown:
        raise UnknownSampleError(
            f"{len(unknown)} pk(s) are not samples of dataset {dataset!r}: {preview(unknown)}; "
            "map ids to pks with resolve()."
        )
    deleted = [status[pk][0] for pk in pks if status[pk][1] != "active"]
    if deleted:
        raise AlreadyDeletedError(
            f"{len(deleted)} sample(s) of dataset {dataset!r} were already deleted by an "
            f"earlier request: {preview(deleted)}; nothing was written. Drop them from the "
            "request (resolve() lists them in already_deleted_ids)."
        )


def update_deletion(
    conn: sa.Connection,
    deletion_id: int,
    *,
    status: str,
    rolled_back_version: int | None,
    to_version: int | None,
    details: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    """Moves a request to ``status``, recording versions and merging ``details`` in.

    ``details`` are merged key by key into the stored details, so each stage of the work can
    add what it learnt without repeating earlier stages.

    Raises:
        ProvenanceError: unknown request, a closed request, or versions without a model.
        ConfigError: unknown status or malformed details.
    """
    if status not in DELETION_STATUSES:
        raise ConfigError(f"status must be one of {DELETION_STATUSES}; got {status!r}.")
    detail_map = _details(details)
    row = conn.execute(
        sa.select(Deletion.status, Deletion.model_id, Deletion.details)
        .where(Deletion.id == deletion_id)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise ProvenanceError(f"no deletion request with id {deletion_id!r}.")
    if row.status in FINAL_STATUSES:
        raise ProvenanceError(
            f"deletion {deletion_id} is already {row.status!r} and closed; open a new request "
            "instead of changing a finished one."
        )
    values: dict[str, Any] = {"status": status, "details": {**row.details, **detail_map}}
    if status in _STAMPED:
        values["completed_at"] = now
    if rolled_back_version is not None or to_version is not None:
        if row.model_id is None:
            raise ProvenanceError(
                f"deletion {deletion_id} has no model, so it cannot record model versions."
            )
        found = conn.execute(
            sa.select(Model.id, Model.name, Model.dataset_id).where(Model.id == row.model_id)
        ).one()
        owner = lookups.ModelRow(id=found.id, name=found.name, dataset_id=found.dataset_id)
        if rolled_back_version is not None:
            values["rolled_back_version_id"] = lookups.version_id(conn, owner, rolled_back_version)
        if to_version is not None:
            values["to_version_id"] = lookups.version_id(conn, owner, to_version)
    conn.execute(sa.update(Deletion).where(Deletion.id == deletion_id).values(**values))


def deletion_records(
    conn: sa.Connection,
    *,
    deletion_id: int | None = None,
    dataset: str | None = None,
    model: str | None = None,
) -> list[DeletionRecord]:
    """Deletion requests matching the filters, oldest first.

    Raises:
        UnknownNameError: a dataset or model filter names nothing registered.
    """
    stmt = (
        sa.select(
            Deletion.id,
            Deletion.status,
            Deletion.reason,
            Deletion.requested_at,
            Deletion.completed_at,
            Deletion.num_samples,
            Deletion.from_version_id,
            Deletion.rolled_back_version_id,
            Deletion.to_version_id,
            Deletion.details,
            Dataset.name.label("dataset_name"),
            Model.name.label("model_name"),
        )
        .join(Dataset, Dataset.id == Deletion.dataset_id)
        .outerjoin(Model, Model.id == Deletion.model_id)
        .order_by(Deletion.id)
    )
    if deletion_id is not None:
        stmt = stmt.where(Deletion.id == deletion_id)
    if dataset is not None:
        stmt = stmt.where(Deletion.dataset_id == lookups.get_dataset(conn, dataset).id)
    if model is not None:
        stmt = stmt.where(Deletion.model_id == lookups.get_model(conn, model).id)
    rows = conn.execute(stmt).all()
    version_ids = {
        v
        for r in rows
        for v in (r.from_version_id, r.rolled_back_version_id, r.to_version_id)
        if v is not None
    }
    numbers = lookups.version_numbers(conn, version_ids)
    return [
        DeletionRecord(
            id=int(r.id),
            dataset=r.dataset_name,
            model=r.model_name,
            status=r.status,
            reason=r.reason,
            requested_at=r.requested_at,
            completed_at=r.completed_at,
            num_samples=int(r.num_samples),
            from_version=_number(numbers, r.from_version_id),
            rolled_back_version=_number(numbers, r.rolled_back_version_id),
            to_version=_number(numbers, r.to_version_id),
            details=r.details,
        )
        for r in rows
    ]


def _number(numbers: dict[int, int], version_id: int | None) -> int | None:
    return None if version_id is None else numbers[int(version_id)]


def deletion_sample_ids(conn: sa.Connection, deletion_id: int) -> list[str]:
    """The sample ids a deletion request removed, in pk order.

    Raises:
        ProvenanceError: there is no such request.
    """
    exists = conn.execute(sa.select(Deletion.id).where(Deletion.id == deletion_id)).first()
    if exists is None:
        raise ProvenanceError(f"no deletion request with id {deletion_id!r}.")
    stmt = (
        sa.select(Sample.sample_id)
        .join(DeletionSample, DeletionSample.sample_pk == Sample.id)
        .where(DeletionSample.deletion_id == deletion_id)
        .order_by(Sample.id)
    )
    return [str(s) for s in conn.execute(stmt).scalars()]
