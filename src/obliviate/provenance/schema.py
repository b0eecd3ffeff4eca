"""The provenance schema: which samples exist, and which checkpoints and versions saw them.

This module is the single description of the tables; ``migrations/versions`` creates the same
tables by hand, and a test compares the two so they cannot drift. Writers use Core statements
against these classes' tables for speed; the ORM classes exist so queries are typed.

Constraint names follow :data:`NAMING_CONVENTION` so that migrations can refer to them on
every backend. Timestamps are stored as UTC and always read back timezone-aware.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "CHECKPOINT_ID_LENGTH",
    "DELETION_STATUSES",
    "NAMING_CONVENTION",
    "SAMPLE_STATUSES",
    "VERSION_STATUSES",
    "Base",
    "Checkpoint",
    "CheckpointInput",
    "CheckpointSample",
    "Component",
    "Dataset",
    "Deletion",
    "DeletionSample",
    "Model",
    "ModelVersion",
    "Sample",
    "UTCDateTime",
    "VersionComponent",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SAMPLE_STATUSES = ("active", "deleted")
VERSION_STATUSES = ("candidate", "active", "retired")
DELETION_STATUSES = ("pending", "rolled_back", "completed", "failed", "noop")
CHECKPOINT_ID_LENGTH = 64

_NAME = 200
_SAMPLE_ID = 256


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC on every backend.

    SQLite has no timezone type and would silently keep whatever offset it was given, so
    values are normalised to UTC on the way in and tagged UTC on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given; the registry stores UTC only.")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base holding the shared metadata and naming convention."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Dataset(Base):
    """A named collection of samples; ``deletable=False`` marks e.g. public pretraining data."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(_NAME), unique=True)
    num_classes: Mapped[int] = mapped_column(sa.Integer)
    feature_shape: Mapped[list[int]] = mapped_column(sa.JSON)
    deletable: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Sample(Base):
    """One training sample: its stable id, subject, content hash and feature-store location."""

    __tablename__ = "samples"
    __table_args__ = (
        sa.UniqueConstraint("dataset_id", "sample_id"),
        sa.UniqueConstraint("dataset_id", "chunk", "row"),
        sa.Index(None, "dataset_id", "subject_id"),
        sa.CheckConstraint(_in("status", SAMPLE_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id"))
    sample_id: Mapped[str] = mapped_column(sa.String(_SAMPLE_ID))
    subject_id: Mapped[str | None] = mapped_column(sa.String(_SAMPLE_ID))
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    label: Mapped[int] = mapped_column(sa.Integer)
    chunk: Mapped[str] = mapped_column(sa.String(512))
    row: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Model(Base):
    """A named model: the strategy that trains it, its config and its training dataset."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(_NAME), unique=True)
    strategy: Mapped[str] = mapped_column(sa.String(_NAME))
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Component(Base):
    """A separately trained part of a model (a shard, a slice chain, an adapter, a head)."""

    __tablename__ = "components"
    __table_args__ = (sa.UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"))
    name: Mapped[str] = mapped_column(sa.String(_NAME))


class Checkpoint(Base):
    """A content-addressed checkpoint of one component, chained to the one it continued."""

    __tablename__ = "checkpoints"

    id: Mapped[str] = mapped_column(sa.String(CHECKPOINT_ID_LENGTH), primary_key=True)
    component_id: Mapped[int] = mapped_column(sa.ForeignKey("components.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(sa.ForeignKey("checkpoints.id"), index=True)
    storage_url: Mapped[str] = mapped_column(sa.Text)
    lineage_hash: Mapped[str] = mapped_column(sa.String(64))
    num_samples_seen: Mapped[int] = mapped_column(sa.BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CheckpointSample(Base):
    """A sample a checkpoint saw that none of its ancestors had seen (a lineage delta)."""

    __tablename__ = "checkpoint_samples"
    __table_args__ = (sa.Index(None, "sample_pk"),)

    checkpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("checkpoints.id"), primary_key=True)
    sample_pk: Mapped[int] = mapped_column(sa.ForeignKey("samples.id"), primary_key=True)


class CheckpointInput(Base):
    """A checkpoint computed from another checkpoint's outputs (SISPA's aggregator from its
    shards): it inherits the input's lineage, followed one level deep."""

    __tablename__ = "checkpoint_inputs"
    __table_args__ = (sa.Index(None, "input_id"),)

    checkpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("checkpoints.id"), primary_key=True)
    input_id: Mapped[str] = mapped_column(sa.ForeignKey("checkpoints.id"), primary_key=True)


class ModelVersion(Base):
    """An immutable, content-hashed assignment of checkpoints to a model's components.

    A partial unique index allows at most one ``active`` version per model, so the database
    itself refuses a second active version even if two writers race.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        sa.UniqueConstraint("model_id", "number"),
        sa.Index(
            "uq_model_versions_model_id_active",
            "model_id",
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
        sa.CheckConstraint(_in("status", VERSION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"))
    number: Mapped[int] = mapped_column(sa.Integer)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(50))
    status: Mapped[str] = mapped_column(sa.String(16))
    parent_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class VersionComponent(Base):
    """The checkpoint serving one component in a version; NULL excludes the component."""

    __tablename__ = "version_components"

    version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), primary_key=True)
    component_name: Mapped[str] = mapped_column(sa.String(_NAME), primary_key=True)
    checkpoint_id: Mapped[str | None] = mapped_column(sa.ForeignKey("checkpoints.id"), index=True)


class Deletion(Base):
    """A deletion request: committed before it is acknowledged, then driven to completion."""

    __tablename__ = "deletions"
    __table_args__ = (sa.CheckConstraint(_in("status", DELETION_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id"), index=True)
    model_id: Mapped[int | None] = mapped_column(sa.ForeignKey("models.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    num_samples: Mapped[int] = mapped_column(sa.Integer)
    from_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    rolled_back_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    to_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class DeletionSample(Base):
    """A sample removed by a deletion request."""

    __tablename__ = "deletion_samples"
    __table_args__ = (sa.Index(None, "sample_pk"),)

    deletion_id: Mapped[int] = mapped_column(sa.ForeignKey("deletions.id"), primary_key=True)
    sample_pk: Mapped[int] = mapped_column(sa.ForeignKey("samples.id"), primary_key=True)
