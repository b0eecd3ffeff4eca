"""Lineage queries: who saw a sample, what a version has seen, and whether that is allowed.

Checkpoints store only their delta of newly seen samples, so every question walks the
``parent_id`` chain with a recursive CTE: *down* to descendants ("which checkpoints were
influenced by this sample?") or *up* to ancestors ("which samples influenced this
version?"). The SQL is plain ``WITH RECURSIVE ... UNION`` and runs on SQLite and PostgreSQL;
``UNION`` (not ``UNION ALL``) also stops the walk should a cycle ever be recorded.

A checkpoint computed from other checkpoints' outputs (``checkpoint_inputs``: SISPA's
aggregator and its shards) inherits their lineage. Inputs are one level deep (enforced when
recorded), so the walks add them as one extra step: an input's ancestors join a version's
lineage, and the consumers of an influenced checkpoint are influenced too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import aliased

from obliviate.errors import ConfigError, UnknownSampleError
from obliviate.provenance import lookups
from obliviate.provenance._util import chunks
from obliviate.provenance.checkpoints import checkpoint_records
from obliviate.provenance.records import CheckpointRecord, VerifyReport, VersionRecord
from obliviate.provenance.schema import (
    Checkpoint,
    CheckpointInput,
    CheckpointSample,
    Sample,
    VersionComponent,
)
from obliviate.provenance.versions import version_records

__all__ = [
    "checkpoints_that_saw",
    "influence_sample_ids",
    "influence_set",
    "verify_version",
    "versions_that_saw",
]


def _sample_pks(
    conn: sa.Connection, *, dataset: str, sample_id: str | None, subject_id: str | None
) -> sa.Select[Any]:
    """A subquery of the pks of the sample and of every sample of the subject.

    A subquery rather than a list, so a subject with many samples never hits the database's
    limit on bound parameters.
    """
    if sample_id is None and subject_id is None:
        raise ConfigError("pass sample_id=, subject_id=, or both, to say whose lineage to trace.")
    data = lookups.get_dataset(conn, dataset)
    matches = []
    if sample_id is not None:
        by_id = Sample.sample_id == sample_id
        if (
            conn.execute(sa.select(Sample.id).where(Sample.dataset_id == data.id, by_id)).first()
            is None
        ):
            raise UnknownSampleError(
                f"sample id {sample_id!r} was never registered in dataset {dataset!r}."
            )
        matches.append(by_id)
    if subject_id is not None:
        by_subject = Sample.subject_id == subject_id
        stmt = sa.select(Sample.id).where(Sample.dataset_id == data.id, by_subject).limit(1)
        if conn.execute(stmt).first() is None:
            raise UnknownSampleError(
                f"subject {subject_id!r} has no samples in dataset {dataset!r}."
            )
        matches.append(by_subject)
    return sa.select(Sample.id).where(Sample.dataset_id == data.id, sa.or_(*matches))


def _descendants(pks: sa.Select[Any]) -> sa.Subquery:
    """Checkpoints whose delta holds any of ``pks``, all their descendants, and every
    checkpoint computed from one of those (its consumers: inputs are one level deep)."""
    seed = (
        sa.select(CheckpointSample.checkpoint_id.label("id"))
        .where(CheckpointSample.sample_pk.in_(pks))
        .cte("saw", recursive=True)
    )
    child = aliased(Checkpoint)
    saw = seed.union(sa.select(child.id).where(child.parent_id == seed.c.id))
    consumers = sa.select(CheckpointInput.checkpoint_id.label("id")).where(
        CheckpointInput.input_id.in_(sa.select(saw.c.id))
    )
    return sa.union(sa.select(saw.c.id), consumers).subquery("influenced")


def _ancestors(version_id: int) -> sa.CTE:
    """Each component of a version paired with its checkpoint, its inputs, and every
    ancestor of those."""
    served = sa.select(
        VersionComponent.component_name.label("component"),
        VersionComponent.checkpoint_id.label("id"),
    ).where(
        VersionComponent.version_id == version_id,
        VersionComponent.checkpoint_id.is_not(None),
    )
    inputs = sa.select(
        VersionComponent.component_name.label("component"),
        CheckpointInput.input_id.label("id"),
    ).join(CheckpointInput, CheckpointInput.checkpoint_id == VersionComponent.checkpoint_id)
    inputs = inputs.where(VersionComponent.version_id == version_id)
    roots = sa.union(served, inputs).subquery("roots")
    seed = sa.select(roots.c.component, roots.c.id).cte("lineage", recursive=True)
    node = aliased(Checkpoint)
    return seed.union(
        sa.select(seed.c.component, node.parent_id)
        .join(node, node.id == seed.c.id)
        .where(node.parent_id.is_not(None))
    )


def checkpoints_that_saw(
    conn: sa.Connection,
    *,
    dataset: str,
    sample_id: str | None = None,
    subject_id: str | None = None,
) -> list[CheckpointRecord]:
    """Checkpoints influenced by a sample or by any sample of a subject, oldest first.

    Raises:
        UnknownSampleError: the sample id or subject is not registered in ``dataset``.
        ConfigError: neither ``sample_id`` nor ``subject_id`` was given.
    """
    pks = _sample_pks(conn, dataset=dataset, sample_id=sample_id, subject_id=subject_id)
    saw = _descendants(pks)
    ids = conn.execute(sa.select(saw.c.id)).scalars().all()
    return checkpoint_records(conn, ids=[str(i) for i in ids])


def versions_that_saw(
    conn: sa.Connection,
    *,
    dataset: str,
    sample_id: str | None = None,
    subject_id: str | None = None,
) -> list[VersionRecord]:
    """Model versions that serve a checkpoint influenced by the sample or subject.

    Raises:
        UnknownSampleError: the sample id or subject is not registered in ``dataset``.
        ConfigError: neither ``sample_id`` nor ``subject_id`` was given.
    """
    pks = _sample_pks(conn, dataset=dataset, sample_id=sample_id, subject_id=subject_id)
    saw = _descendants(pks)
    stmt = (
        sa.select(VersionComponent.version_id)
        .where(VersionComponent.checkpoint_id.in_(sa.select(saw.c.id)))
        .distinct()
    )
    return version_records(conn, version_ids=[int(v) for v in conn.execute(stmt).scalars()])


def _version(conn: sa.Connection, *, model: str, number: int) -> tuple[lookups.ModelRow, int]:
    owner = lookups.get_model(conn, model)
    return owner, lookups.version_id(conn, owner, number)


def influence_set(conn: sa.Connection, *, model: str, number: int) -> npt.NDArray[np.int64]:
    """Sorted pks of every sample that influenced any checkpoint of the version.

    Raises:
        UnknownNameError: unknown model.
        ProvenanceError: unknown version.
    """
    _, version_id = _version(conn, model=model, number=number)
    lineage = _ancestors(version_id)
    stmt = (
        sa.select(CheckpointSample.sample_pk)
        .where(CheckpointSample.checkpoint_id.in_(sa.select(lineage.c.id)))
        .distinct()
        .order_by(CheckpointSample.sample_pk)
    )
    return np.asarray(conn.execute(stmt).scalars().all(), dtype=np.int64)


def influence_sample_ids(conn: sa.Connection, *, model: str, number: int) -> list[str]:
    """The sample ids of :func:`influence_set`, in pk order."""
    _, version_id = _version(conn, model=model, number=number)
    lineage = _ancestors(version_id)
    seen = (
        sa.select(CheckpointSample.sample_pk)
        .where(CheckpointSample.checkpoint_id.in_(sa.select(lineage.c.id)))
        .distinct()
        .subquery()
    )
    stmt = sa.select(Sample.sample_id).join(seen, seen.c.sample_pk == Sample.id).order_by(Sample.id)
    return [str(s) for s in conn.execute(stmt).scalars()]


def verify_version(conn: sa.Connection, *, model: str, number: int) -> VerifyReport:
    """Checks invariant 2 for one version: no checkpoint in its lineage saw a deleted sample.

    Raises:
        UnknownNameError: unknown model.
        ProvenanceError: unknown version.
    """
    owner, version_id = _version(conn, model=model, number=number)
    # Drive the check from the (few) deleted samples through the sample_pk index, rather than
    # expanding the version's whole influence set: it runs on every forget, in the path of
    # the instant rollback, and a version can have seen every sample of the dataset.
    deleted_rows = conn.execute(
        sa.select(Sample.id, Sample.sample_id).where(
            Sample.dataset_id == owner.dataset_id, Sample.status == "deleted"
        )
    ).all()
    names = {int(pk): str(sample_id) for pk, sample_id in deleted_rows}
    lineage = _ancestors(version_id)
    hits: list[tuple[str, int, str]] = []
    for part in chunks(sorted(names), 500):
        stmt = (
            sa.select(lineage.c.component, CheckpointSample.sample_pk)
            .join(lineage, lineage.c.id == CheckpointSample.checkpoint_id)
            .where(CheckpointSample.sample_pk.in_(list(part)))
            .distinct()
        )
        hits += [(str(c), int(pk), names[int(pk)]) for c, pk in conn.execute(stmt)]
    hits.sort(key=lambda hit: (hit[0], hit[1]))
    per_component: dict[str, list[str]] = {}
    deleted: dict[int, str] = {}
    for component, pk, sample_id in hits:
        per_component.setdefault(str(component), []).append(str(sample_id))
        deleted[int(pk)] = str(sample_id)
    return VerifyReport(
        model=model,
        version=number,
        ok=not deleted,
        deleted_seen=[deleted[pk] for pk in sorted(deleted)],
        components_with_deleted=per_component,
        deleted_seen_pks=sorted(deleted),
    )
