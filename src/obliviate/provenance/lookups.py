"""Name-to-row lookups shared by the registry's writers and queries.

Public names (dataset, model, version number) are what callers pass; surrogate keys are what
the tables join on. Every translation happens here, so every unknown name fails the same
way: with the list of names that do exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from obliviate.errors import ProvenanceError, UnknownNameError
from obliviate.provenance._util import preview
from obliviate.provenance.schema import Dataset, Model, ModelVersion

__all__ = [
    "DatasetRow",
    "ModelRow",
    "find_dataset",
    "find_model",
    "get_dataset",
    "get_model",
    "version_id",
    "version_numbers",
]


@dataclass(frozen=True)
class DatasetRow:
    """The columns of a dataset that writers check against."""

    id: int
    name: str
    num_classes: int
    feature_shape: tuple[int, ...]
    deletable: bool


@dataclass(frozen=True)
class ModelRow:
    """The columns of a model that writers check against."""

    id: int
    name: str
    dataset_id: int


def find_dataset(conn: sa.Connection, name: str, *, lock: bool = False) -> DatasetRow | None:
    """The dataset called ``name``, or ``None``; ``lock`` holds its row until commit."""
    stmt = sa.select(
        Dataset.id, Dataset.name, Dataset.num_classes, Dataset.feature_shape, Dataset.deletable
    ).where(Dataset.name == name)
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).one_or_none()
    if row is None:
        return None
    return DatasetRow(
        id=row.id,
        name=row.name,
        num_classes=row.num_classes,
        feature_shape=tuple(int(d) for d in row.feature_shape),
        deletable=bool(row.deletable),
    )


def get_dataset(conn: sa.Connection, name: str, *, lock: bool = False) -> DatasetRow:
    """The dataset called ``name``.

    Raises:
        UnknownNameError: listing the registered datasets.
    """
    found = find_dataset(conn, name, lock=lock)
    if found is None:
        names = conn.execute(sa.select(Dataset.name).order_by(Dataset.name)).scalars().all()
        raise UnknownNameError(
            f"no dataset named {name!r} is registered; registered datasets: "
            f"{preview(names, 20) or 'none'}. Register samples with register_samples() first."
        )
    return found


def find_model(conn: sa.Connection, name: str, *, lock: bool = False) -> ModelRow | None:
    """The model called ``name``, or ``None``; ``lock`` holds its row until commit."""
    stmt = sa.select(Model.id, Model.name, Model.dataset_id).where(Model.name == name)
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).one_or_none()
    return None if row is None else ModelRow(id=row.id, name=row.name, dataset_id=row.dataset_id)


def get_model(conn: sa.Connection, name: str, *, lock: bool = False) -> ModelRow:
    """The model called ``name``.

    Raises:
        UnknownNameError: listing the registered models.
    """
    found = find_model(conn, name, lock=lock)
    if found is None:
        names = conn.execute(sa.select(Model.name).order_by(Model.name)).scalars().all()
        raise UnknownNameError(
            f"no model named {name!r} is registered; registered models: "
            f"{preview(names, 20) or 'none'}. Create it with create_model() first."
        )
    return found


def version_id(conn: sa.Connection, model: ModelRow, number: int) -> int:
    """The surrogate key of version ``number`` of ``model``.

    Raises:
        ProvenanceError: the model has no such version; lists the numbers it has.
    """
    found = conn.execute(
        sa.select(ModelVersion.id).where(
            ModelVersion.model_id == model.id, ModelVersion.number == number
        )
    ).scalar_one_or_none()
    if found is None:
        numbers = conn.execute(
            sa.select(ModelVersion.number)
            .where(ModelVersion.model_id == model.id)
            .order_by(ModelVersion.number)
        ).scalars()
        raise ProvenanceError(
            f"model {model.name!r} has no version {number!r}; its versions are "
            f"{preview(numbers, 20) or 'none yet'}."
        )
    return int(found)


def version_numbers(conn: sa.Connection, ids: set[int]) -> dict[int, int]:
    """Version numbers keyed by version surrogate key, for the ids given."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(ModelVersion.id, ModelVersion.number).where(ModelVersion.id.in_(sorted(ids)))
    )
    return {int(r.id): int(r.number) for r in rows}
