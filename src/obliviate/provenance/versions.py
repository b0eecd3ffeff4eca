"""Model versions: numbered, content-hashed assignments of checkpoints to components.

Switching the serving version retires the old one and activates the new one in the same
transaction (invariant 4), and a partial unique index makes a second active version
impossible even if two writers race.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from obliviate.errors import ConfigError, ProvenanceError
from obliviate.provenance import lookups
from obliviate.provenance._util import (
    IN_CHUNK,
    canonical_json,
    chunks,
    inserted_pk,
    require_hex64,
    require_name,
    sha256_hex,
)
from obliviate.provenance.checkpoints import checkpoint_records
from obliviate.provenance.records import VersionRecord
from obliviate.provenance.schema import Model, ModelVersion, VersionComponent

__all__ = [
    "activate_version",
    "create_version",
    "version_content_hash",
    "version_records",
]


def version_content_hash(
    *, model: str, components: Mapping[str, str | None], details: Mapping[str, Any]
) -> str:
    """SHA-256 over canonical JSON of the model name, its component map and details.

    Two versions with the same hash serve the same checkpoints under the same description,
    so the hash identifies a version across registries and in receipts.
    """
    payload = {"model": model, "components": dict(components), "details": dict(details)}
    return sha256_hex(canonical_json(payload, what="version details"))


def create_version(
    conn: sa.Connection,
    *,
    model: str,
    components: Mapping[str, str | None],
    kind: str,
    details: Mapping[str, Any] | None,
    parent_version: int | None,
    activate: bool,
    now: datetime,
) -> int:
    """Creates the next version of ``model``, optionally making it the active one.

    Returns:
        The new version's number.

    Raises:
        ProvenanceError: a checkpoint is unknown or belongs to another model or component,
            or ``parent_version`` does not exist.
        ConfigError: malformed component map, kind or details.
    """
    require_name(kind, what="version kind")
    if not isinstance(components, Mapping) or not components:
        raise ConfigError(
            "components must be a non-empty mapping of component name to checkpoint id "
            f"(or None to exclude it); got {components!r}."
        )
    for name, checkpoint_id in components.items():
        require_name(name, what="component name")
        if checkpoint_id is not None:
            require_hex64(checkpoint_id, what=f"checkpoint id of component {name!r}")
    if details is not None and not isinstance(details, Mapping):
        raise ConfigError(f"details must be a mapping or None; got {type(details).__name__}.")
    detail_map = dict(details or {})
    content_hash = version_content_hash(model=model, components=components, details=detail_map)
    owner = lookups.get_model(conn, model, lock=True)
    _check_checkpoints(conn, model=model, components=components)
    parent_id = None
    if parent_version is not None:
        parent_id = lookups.version_id(conn, owner, parent_version)
    latest = conn.execute(
        sa.select(sa.func.max(ModelVersion.number)).where(ModelVersion.model_id == owner.id)
    ).scalar_one()
    number = int(latest or 0) + 1
    result = conn.execute(
        sa.insert(ModelVersion).values(
            model_id=owner.id,
            number=number,
            content_hash=content_hash,
            kind=kind,
            status="candidate",
            parent_version_id=parent_id,
            details=detail_map,
            created_at=now,
            activated_at=None,
        )
    )
    new_id = inserted_pk(result)
    conn.execute(
        sa.insert(VersionComponent),
        [
            {"version_id": new_id, "component_name": name, "checkpoint_id": checkpoint_id}
            for name, checkpoint_id in sorted(components.items())
        ],
    )
    if activate:
        _activate(conn, model_id=owner.id, version_id=new_id, now=now)
    return number


def _check_checkpoints(
    conn: sa.Connection, *, model: str, components: Mapping[str, str | None]
) -> None:
    wanted = sorted({c for c in components.values() if c is not None})
    found = {c.checkpoint_id: c for c in checkpoint_records(conn, ids=wanted)}
    problems = []
    for name, checkpoint_id in sorted(components.items()):
        if checkpoint_id is None:
            continue
        record = found.get(checkpoint_id)
        if record is None:
            problems.append(f"{name}: checkpoint {checkpoint_id} is not recorded")
        elif (record.model, record.component) != (model, name):
            problems.append(
                f"{name}: checkpoint {checkpoint_id} belongs to model {record.model!r} "
                f"component {record.component!r}"
            )
    if problems:
        raise ProvenanceError(
            f"cannot create a version of model {model!r}: {'; '.join(problems)}. Record each "
            "checkpoint under its own model and component before versioning it."
        )


def activate_version(conn: sa.Connection, *, model: str, number: int, now: datetime) -> None:
    """Makes version ``number`` the only active version of ``model``.

    Raises:
        ProvenanceError: the version does not exist.
    """
    owner = lookups.get_model(conn, model, lock=True)
    target = lookups.version_id(conn, owner, number)
    status = conn.execute(
        sa.select(ModelVersion.status).where(ModelVersion.id == target)
    ).scalar_one()
    if status != "active":
        _activate(conn, model_id=owner.id, version_id=target, now=now)


def _activate(conn: sa.Connection, *, model_id: int, version_id: int, now: datetime) -> None:
    # Retire first: the partial unique index would refuse two active rows even mid-transaction.
    conn.execute(
        sa.update(ModelVersion)
        .where(
            ModelVersion.model_id == model_id,
            ModelVersion.status == "active",
            ModelVersion.id != version_id,
        )
        .values(status="retired")
    )
    conn.execute(
        sa.update(ModelVersion)
        .where(ModelVersion.id == version_id)
        .values(status="active", activated_at=now)
    )


def version_records(
    conn: sa.Connection,
    *,
    model_id: int | None = None,
    number: int | None = None,
    status: str | None = None,
    version_ids: Iterable[int] | None = None,
) -> list[VersionRecord]:
    """Versions matching every filter given, ordered by model name and number."""
    parent = aliased(ModelVersion)
    stmt = (
        sa.select(
            ModelVersion.id,
            Model.name.label("model"),
            ModelVersion.number,
            ModelVersion.content_hash,
            ModelVersion.kind,
            ModelVersion.status,
            ModelVersion.details,
            ModelVersion.created_at,
            ModelVersion.activated_at,
            parent.number.label("parent_number"),
        )
        .join(Model, Model.id == ModelVersion.model_id)
        .outerjoin(parent, parent.id == ModelVersion.parent_version_id)
        .order_by(Model.name, ModelVersion.number)
    )
    if model_id is not None:
        stmt = stmt.where(ModelVersion.model_id == model_id)
    if number is not None:
        stmt = stmt.where(ModelVersion.number == number)
    if status is not None:
        stmt = stmt.where(ModelVersion.status == status)
    if version_ids is None:
        rows = list(conn.execute(stmt))
    else:
        rows = []
        for part in chunks(sorted(set(version_ids)), IN_CHUNK):
            rows.extend(conn.execute(stmt.where(ModelVersion.id.in_(part))))
        rows.sort(key=lambda r: (r.model, r.number))
    members = _components(conn, [int(r.id) for r in rows])
    return [
        VersionRecord(
            model=r.model,
            number=int(r.number),
            content_hash=r.content_hash,
            kind=r.kind,
            status=r.status,
            components=members.get(int(r.id), {}),
            details=r.details,
            created_at=r.created_at,
            activated_at=r.activated_at,
            parent_version=None if r.parent_number is None else int(r.parent_number),
        )
        for r in rows
    ]


def _components(conn: sa.Connection, version_ids: list[int]) -> dict[int, dict[str, str | None]]:
    out: dict[int, dict[str, str | None]] = {}
    for part in chunks(version_ids, IN_CHUNK):
        stmt = (
            sa.select(
                VersionComponent.version_id,
                VersionComponent.component_name,
                VersionComponent.checkpoint_id,
            )
            .where(VersionComponent.version_id.in_(part))
            .order_by(VersionComponent.version_id, VersionComponent.component_name)
        )
        for version_id, name, checkpoint_id in conn.execute(stmt):
            out.setdefault(int(version_id), {})[str(name)] = checkpoint_id
    return out
