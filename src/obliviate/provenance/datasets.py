"""Registering samples, reading them back in bulk, and resolving deletion requests to them.

Every function takes an open connection and runs inside the caller's transaction; the
:class:`~obliviate.provenance.registry.Provenance` front door decides transaction bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from obliviate.data.sample_set import SampleSet
from obliviate.errors import ConfigError, DataError
from obliviate.provenance import lookups
from obliviate.provenance._bulk import bulk_insert
from obliviate.provenance._util import (
    IN_CHUNK,
    as_id_list,
    chunks,
    inserted_pk,
    preview,
    require_name,
)
from obliviate.provenance.records import DatasetRecord, Resolution, SampleTable
from obliviate.provenance.schema import SAMPLE_STATUSES, Dataset, Sample

__all__ = ["dataset_record", "dataset_records", "register_samples", "resolve", "sample_table"]


def register_samples(
    conn: sa.Connection,
    *,
    dataset: str,
    samples: SampleSet,
    chunk: str,
    deletable: bool,
    now: datetime,
) -> int:
    """Adds ``samples`` to ``dataset`` (creating it if new) as rows 0..n-1 of ``chunk``.

    Everything is checked before the first sample row is written, and the caller's
    transaction makes the whole registration atomic.

    Returns:
        The dataset's surrogate key.

    Raises:
        DataError: the samples do not fit the existing dataset (classes, feature shape,
            deletability), reuse sample ids already registered, or reuse a chunk.
    """
    require_name(dataset, what="dataset name")
    require_name(chunk, what="chunk")
    if not isinstance(samples, SampleSet):
        raise DataError(f"samples must be a SampleSet; got {type(samples).__name__}.")
    if not isinstance(deletable, bool):
        raise ConfigError(f"deletable must be True or False; got {deletable!r}.")
    ids: list[str] = samples.sample_ids.tolist()
    existing = lookups.find_dataset(conn, dataset, lock=True)
    if existing is None:
        result = conn.execute(
            sa.insert(Dataset).values(
                name=dataset,
                num_classes=samples.num_classes,
                feature_shape=list(samples.feature_shape),
                deletable=deletable,
                created_at=now,
            )
        )
        dataset_id = inserted_pk(result)
    else:
        _check_compatible(
            conn, existing, samples=samples, ids=ids, chunk=chunk, deletable=deletable
        )
        dataset_id = existing.id
    subjects: list[str | None] = (
        [None] * len(ids) if samples.subject_ids is None else samples.subject_ids.tolist()
    )
    rows = [
        {
            "dataset_id": dataset_id,
            "sample_id": sample_id,
            "subject_id": subject,
            "content_hash": digest,
            "label": label,
            "chunk": chunk,
            "row": row,
            "status": "active",
            "created_at": now,
            "deleted_at": None,
        }
        for row, (sample_id, subject, digest, label) in enumerate(
            zip(ids, subjects, samples.content_hashes(), samples.labels.tolist(), strict=True)
        )
    ]
    bulk_insert(conn, Sample, rows)
    return dataset_id


def _check_compatible(
    conn: sa.Connection,
    existing: lookups.DatasetRow,
    *,
    samples: SampleSet,
    ids: list[str],
    chunk: str,
    deletable: bool,
) -> None:
    expected = (existing.num_classes, existing.feature_shape, existing.deletable)
    got = (samples.num_classes, samples.feature_shape, deletable)
    if expected != got:
        raise DataError(
            f"dataset {existing.name!r} expects num_classes={expected[0]}, "
            f"feature_shape={expected[1]}, deletable={expected[2]}; got "
            f"num_classes={got[0]}, feature_shape={got[1]}, deletable={got[2]}. Register "
            "these samples under a new dataset name, or convert them to match."
        )
    colliding: list[str] = []
    for part in chunks(ids, IN_CHUNK):
        colliding.extend(
            conn.execute(
                sa.select(Sample.sample_id).where(
                    Sample.dataset_id == existing.id, Sample.sample_id.in_(part)
                )
            ).scalars()
        )
    if colliding:
        raise DataError(
            f"{len(colliding)} sample id(s) are already registered in dataset "
            f"{existing.name!r}: {preview(colliding)}; sample ids must be unique within a "
            "dataset, so give new samples new ids."
        )
    used = conn.execute(
        sa.select(Sample.id).where(Sample.dataset_id == existing.id, Sample.chunk == chunk).limit(1)
    ).first()
    if used is not None:
        raise DataError(
            f"chunk {chunk!r} of dataset {existing.name!r} already holds samples; each "
            "registration writes its features to a new chunk."
        )


def dataset_record(conn: sa.Connection, name: str) -> DatasetRecord:
    """The dataset called ``name`` with its sample counts.

    Raises:
        UnknownNameError: listing the registered datasets.
    """
    row = lookups.get_dataset(conn, name)
    counts = _status_counts(conn, [row.id]).get(row.id, {})
    return _record(row, counts)


def dataset_records(conn: sa.Connection) -> list[DatasetRecord]:
    """Every dataset with its sample counts, by name."""
    rows = [
        lookups.DatasetRow(
            id=r.id,
            name=r.name,
            num_classes=r.num_classes,
            feature_shape=tuple(int(d) for d in r.feature_shape),
            deletable=bool(r.deletable),
        )
        for r in conn.execute(
            sa.select(
                Dataset.id,
                Dataset.name,
                Dataset.num_classes,
                Dataset.feature_shape,
                Dataset.deletable,
            ).order_by(Dataset.name)
        )
    ]
    counts = _status_counts(conn, [r.id for r in rows])
    return [_record(r, counts.get(r.id, {})) for r in rows]


def _status_counts(conn: sa.Connection, dataset_ids: list[int]) -> dict[int, dict[str, int]]:
    if not dataset_ids:
        return {}
    out: dict[int, dict[str, int]] = {}
    stmt = (
        sa.select(Sample.dataset_id, Sample.status, sa.func.count())
        .where(Sample.dataset_id.in_(dataset_ids))
        .group_by(Sample.dataset_id, Sample.status)
    )
    for dataset_id, status, count in conn.execute(stmt):
        out.setdefault(int(dataset_id), {})[str(status)] = int(count)
    return out


def _record(row: lookups.DatasetRow, counts: dict[str, int]) -> DatasetRecord:
    return DatasetRecord(
        name=row.name,
        num_classes=row.num_classes,
        feature_shape=row.feature_shape,
        deletable=row.deletable,
        num_active=counts.get("active", 0),
        num_deleted=counts.get("deleted", 0),
    )


def sample_table(conn: sa.Connection, *, dataset: str, status: str | None) -> SampleTable:
    """The samples of ``dataset`` with ``status`` (all when ``None``), ordered by pk.

    Raises:
        UnknownNameError: the dataset is not registered.
        ConfigError: ``status`` is not a sample status.
    """
    if status is not None and status not in SAMPLE_STATUSES:
        raise ConfigError(f"status must be one of {SAMPLE_STATUSES} or None; got {status!r}.")
    row = lookups.get_dataset(conn, dataset)
    stmt = (
        sa.select(
            Sample.id,
            Sample.sample_id,
            Sample.subject_id,
            Sample.label,
            Sample.chunk,
            Sample.row,
            Sample.status,
        )
        .where(Sample.dataset_id == row.id)
        .order_by(Sample.id)
    )
    if status is not None:
        stmt = stmt.where(Sample.status == status)
    rows = conn.execute(stmt).all()
    pks, sample_ids, subjects, labels, chunk_names, positions, statuses = (
        zip(*rows, strict=True) if rows else ((),) * 7
    )
    return SampleTable(
        pk=np.asarray(pks, dtype=np.int64),
        sample_ids=_strings(sample_ids),
        subject_ids=_strings(["" if s is None else s for s in subjects]),
        labels=np.asarray(labels, dtype=np.int64),
        chunks=_strings(chunk_names),
        rows=np.asarray(positions, dtype=np.int64),
        status=_strings(statuses),
    )


def _strings(values: Sequence[Any]) -> npt.NDArray[np.str_]:
    return np.asarray(list(values), dtype=np.str_)


def resolve(
    conn: sa.Connection,
    *,
    dataset: str,
    sample_ids: Sequence[str] | npt.NDArray[Any],
    subject_ids: Sequence[str] | npt.NDArray[Any],
) -> Resolution:
    """Maps requested sample ids and subjects to the active samples a deletion would remove.

    Raises:
        UnknownNameError: the dataset is not registered.
        ConfigError: ids were passed as one bare string.
    """
    row = lookups.get_dataset(conn, dataset)
    wanted_ids = as_id_list(sample_ids, what="sample_ids")
    wanted_subjects = as_id_list(subject_ids, what="subject_ids")
    found: dict[int, tuple[str, str]] = {}
    seen_ids: set[str] = set()
    for part in chunks(wanted_ids, IN_CHUNK):
        by_id = sa.select(Sample.id, Sample.sample_id, Sample.status).where(
            Sample.dataset_id == row.id, Sample.sample_id.in_(part)
        )
        for pk, sample_id, status in conn.execute(by_id):
            found[int(pk)] = (str(sample_id), str(status))
            seen_ids.add(str(sample_id))
    seen_subjects: set[str] = set()
    for part in chunks(wanted_subjects, IN_CHUNK):
        by_subject = sa.select(Sample.id, Sample.sample_id, Sample.status, Sample.subject_id).where(
            Sample.dataset_id == row.id, Sample.subject_id.in_(part)
        )
        for pk, sample_id, status, subject in conn.execute(by_subject):
            found[int(pk)] = (str(sample_id), str(status))
            seen_subjects.add(str(subject))
    ordered = sorted(found.items())
    active = [(pk, sid) for pk, (sid, status) in ordered if status == "active"]
    return Resolution(
        active_pks=np.asarray([pk for pk, _ in active], dtype=np.int64),
        active_ids=[sid for _, sid in active],
        already_deleted_ids=[sid for _, (sid, status) in ordered if status == "deleted"],
        unknown_ids=[i for i in wanted_ids if i not in seen_ids]
        + [s for s in wanted_subjects if s not in seen_subjects],
    )
