"""Models, their components, and the checkpoints that record what each component has seen.

A checkpoint stores only its *delta*: the samples it saw that its parent chain had not. The
full influence of a checkpoint is the union over itself and its ancestors, which keeps a
slice chain of k checkpoints at O(n) rows rather than O(k n).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from obliviate.errors import ConfigError, ProvenanceError, UnknownSampleError
from obliviate.provenance import lookups
from obliviate.provenance._bulk import bulk_insert_tuples
from obliviate.provenance._util import (
    IN_CHUNK,
    as_pk_array,
    canonical_json,
    chunks,
    inserted_pk,
    preview,
    require_hex64,
    require_name,
)
from obliviate.provenance.records import CheckpointRecord, ModelRecord
from obliviate.provenance.schema import (
    Checkpoint,
    CheckpointInput,
    CheckpointSample,
    Component,
    Dataset,
    Model,
    Sample,
)

__all__ = [
    "checkpoint_records",
    "create_model",
    "model_records",
    "record_checkpoint",
]

# Range-scan the samples table when the pks cover at least 1/_DENSE of their span.
_DENSE = 4


def create_model(
    conn: sa.Connection,
    *,
    name: str,
    strategy: str,
    config: Mapping[str, Any],
    dataset: str,
    now: datetime,
) -> None:
    """Registers a model trained by ``strategy`` on ``dataset``.

    Raises:
        ConfigError: the name is taken, or the config is not JSON-serialisable.
        UnknownNameError: the dataset is not registered.
    """
    require_name(name, what="model name")
    require_name(strategy, what="strategy")
    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a mapping; got {type(config).__name__}.")
    canonical_json(dict(config), what="model config")
    data = lookups.get_dataset(conn, dataset)
    if lookups.find_model(conn, name) is not None:
        raise ConfigError(
            f"a model named {name!r} already exists; choose another name or use the existing one."
        )
    conn.execute(
        sa.insert(Model).values(
            name=name, strategy=strategy, config=dict(config), dataset_id=data.id, created_at=now
        )
    )


def model_records(conn: sa.Connection, *, name: str | None = None) -> list[ModelRecord]:
    """Models by name; only the one called ``name`` when given."""
    stmt = (
        sa.select(
            Model.name,
            Model.strategy,
            Model.config,
            Dataset.name.label("dataset"),
            Model.created_at,
        )
        .join(Dataset, Dataset.id == Model.dataset_id)
        .order_by(Model.name)
    )
    if name is not None:
        stmt = stmt.where(Model.name == name)
    return [
        ModelRecord(
            name=r.name,
            strategy=r.strategy,
            config=r.config,
            dataset=r.dataset,
            created_at=r.created_at,
        )
        for r in conn.execute(stmt)
    ]


def checkpoint_records(
    conn: sa.Connection,
    *,
    ids: Sequence[str] | None = None,
    model_id: int | None = None,
    component: str | None = None,
) -> list[CheckpointRecord]:
    """Checkpoints filtered by id, model and component, oldest first."""
    stmt = (
        sa.select(
            Checkpoint.id,
            Model.name.label("model"),
            Component.name.label("component"),
            Checkpoint.parent_id,
            Checkpoint.storage_url,
            Checkpoint.lineage_hash,
            Checkpoint.num_samples_seen,
            Checkpoint.meta,
            Checkpoint.created_at,
        )
        .join(Component, Component.id == Checkpoint.component_id)
        .join(Model, Model.id == Component.model_id)
        .order_by(Checkpoint.created_at, Checkpoint.id)
    )
    if model_id is not None:
        stmt = stmt.where(Model.id == model_id)
    if component is not None:
        stmt = stmt.where(Component.name == component)
    if ids is None:
        return [_checkpoint(r) for r in conn.execute(stmt)]
    out: list[CheckpointRecord] = []
    for part in chunks(list(ids), IN_CHUNK):
        out.extend(_checkpoint(r) for r in conn.execute(stmt.where(Checkpoint.id.in_(part))))
    return sorted(out, key=lambda c: (c.created_at, c.checkpoint_id))


def _checkpoint(row: sa.Row[Any]) -> CheckpointRecord:
    return CheckpointRecord(
        checkpoint_id=row.id,
        model=row.model,
        component=row.component,
        parent_id=row.parent_id,
        storage_url=row.storage_url,
        lineage_hash=row.lineage_hash,
        num_samples_seen=int(row.num_samples_seen),
        meta=row.meta,
        created_at=row.created_at,
    )


def record_checkpoint(
    conn: sa.Connection,
    *,
    model: str,
    component: str,
    checkpoint_id: str,
    storage_url: str,
    parent_id: str | None,
    lineage_hash: str,
    new_sample_pks: Sequence[int] | npt.NDArray[Any],
    num_samples_seen: int,
    meta: Mapping[str, Any],
    now: datetime,
    inputs: Sequence[str] = (),
) -> CheckpointRecord:
    """Records a checkpoint and the samples it saw that its parent chain had not.

    Idempotent: recording the same checkpoint again returns the stored record without
    writing, because content-addressed checkpoints are retried after crashes.

    ``inputs`` are checkpoints whose outputs this one was computed from (SISPA's aggregator
    and its shards); the lineage queries count every sample an input saw as seen by this
    checkpoint too. Inputs are followed one level deep, so an input may not have inputs of
    its own, and a checkpoint with inputs neither continues nor is continued by a chain.

    Raises:
        ProvenanceError: the id is already recorded with a different model, component,
            parent or lineage hash; the parent or an input is unknown; or the inputs break
            the one-level rule above.
        UnknownSampleError: some pks are not registered samples.
        ConfigError: malformed ids, counts or metadata.
    """
    require_hex64(checkpoint_id, what="checkpoint_id")
    require_hex64(lineage_hash, what="lineage_hash")
    require_name(component, what="component name")
    if parent_id is not None:
        require_hex64(parent_id, what="parent_id")
    if not isinstance(storage_url, str) or not storage_url:
        raise ConfigError(f"storage_url must be a non-empty string; got {storage_url!r}.")
    if isinstance(num_samples_seen, bool) or not isinstance(num_samples_seen, int | np.integer):
        raise ConfigError(f"num_samples_seen must be an integer; got {num_samples_seen!r}.")
    if num_samples_seen < 0:
        raise ConfigError(f"num_samples_seen must be >= 0; got {num_samples_seen}.")
    if not isinstance(meta, Mapping):
        raise ConfigError(f"meta must be a mapping; got {type(meta).__name__}.")
    canonical_json(dict(meta), what="checkpoint meta")
    owner = lookups.get_model(conn, model)
    pks = as_pk_array(new_sample_pks, what="new_sample_pks")

    existing = checkpoint_records(conn, ids=[checkpoint_id])
    if existing:
        return _same_or_raise(
            existing[0],
            model=model,
            component=component,
            parent_id=parent_id,
            lineage_hash=lineage_hash,
        )
    if parent_id == checkpoint_id:
        raise ProvenanceError(f"checkpoint {checkpoint_id} cannot be its own parent.")
    if parent_id is not None and not checkpoint_records(conn, ids=[parent_id]):
        raise ProvenanceError(
            f"parent checkpoint {parent_id} is not recorded; record checkpoints parent-first."
        )
    _require_samples(conn, pks)
    inputs = _check_inputs(conn, checkpoint_id=checkpoint_id, parent_id=parent_id, inputs=inputs)
    component_id = _component_id(conn, model_id=owner.id, name=component)
    conn.execute(
        sa.insert(Checkpoint).values(
            id=checkpoint_id,
            component_id=component_id,
            parent_id=parent_id,
            storage_url=storage_url,
            lineage_hash=lineage_hash,
            num_samples_seen=int(num_samples_seen),
            meta=dict(meta),
            created_at=now,
        )
    )
    bulk_insert_tuples(
        conn,
        CheckpointSample,
        ("checkpoint_id", "sample_pk"),
        [(checkpoint_id, pk) for pk in pks.tolist()],
    )
    bulk_insert_tuples(
        conn, CheckpointInput, ("checkpoint_id", "input_id"), [(checkpoint_id, i) for i in inputs]
    )
    return checkpoint_records(conn, ids=[checkpoint_id])[0]


def _check_inputs(
    conn: sa.Connection, *, checkpoint_id: str, parent_id: str | None, inputs: Sequence[str]
) -> list[str]:
    """The validated, de-duplicated inputs (see :func:`record_checkpoint`)."""
    if isinstance(inputs, str):
        raise ConfigError("inputs must be a sequence of checkpoint ids, not one string.")
    wanted = sorted({require_hex64(i, what="input checkpoint id") for i in inputs})
    if (
        parent_id is not None
        and conn.execute(
            sa.select(CheckpointInput.input_id).where(CheckpointInput.checkpoint_id == parent_id)
        ).first()
    ):
        raise ProvenanceError(
            f"parent checkpoint {parent_id} was computed from inputs; such a checkpoint ends "
            "its chain (record a fresh one with inputs instead)."
        )
    if not wanted:
        return []
    if parent_id is not None:
        raise ProvenanceError(
            f"checkpoint {checkpoint_id} has inputs and a parent; a checkpoint computed from "
            "inputs starts no chain (record it with parent_id=None)."
        )
    if checkpoint_id in wanted:
        raise ProvenanceError(f"checkpoint {checkpoint_id} cannot be its own input.")
    known = {r.checkpoint_id for r in checkpoint_records(conn, ids=wanted)}
    missing = [i for i in wanted if i not in known]
    if missing:
        raise ProvenanceError(
            f"input checkpoints {missing[:3]} are not recorded; record inputs first."
        )
    nested = conn.execute(
        sa.select(CheckpointInput.checkpoint_id).where(CheckpointInput.checkpoint_id.in_(wanted))
    ).first()
    if nested is not None:
        raise ProvenanceError(
            f"input checkpoint {nested[0]} has inputs of its own; inputs are followed one level "
            "deep, so record the samples it inherits directly."
        )
    return wanted


def _same_or_raise(
    found: CheckpointRecord,
    *,
    model: str,
    component: str,
    parent_id: str | None,
    lineage_hash: str,
) -> CheckpointRecord:
    expected = (found.model, found.component, found.parent_id, found.lineage_hash)
    got = (model, component, parent_id, lineage_hash)
    if expected != got:
        raise ProvenanceError(
            f"checkpoint {found.checkpoint_id} is already recorded as (model, component, "
            f"parent, lineage_hash) = {expected}; got {got}. A content-addressed checkpoint "
            "belongs to one component: include the component and its data in what is hashed."
        )
    return found


def _require_samples(conn: sa.Connection, pks: npt.NDArray[np.int64]) -> None:
    if pks.size == 0:
        return
    low, high = int(pks[0]), int(pks[-1])
    if high - low + 1 <= _DENSE * pks.size:
        # Dense pks (a shard or slice of a registered chunk): one range scan beats many
        # IN lists, which are slow to plan on PostgreSQL.
        stmt = sa.select(Sample.id).where(Sample.id.between(low, high))
        present = np.fromiter(conn.execute(stmt).scalars(), dtype=np.int64)
    else:
        found: list[int] = []
        for part in chunks(pks.tolist(), IN_CHUNK):
            found.extend(conn.execute(sa.select(Sample.id).where(Sample.id.in_(part))).scalars())
        present = np.asarray(found, dtype=np.int64)
    missing = pks[~np.isin(pks, present)].tolist()
    if missing:
        raise UnknownSampleError(
            f"{len(missing)} sample pk(s) are not registered: {preview(missing)}; pass pks from "
            "Provenance.samples() or resolve()."
        )


def _component_id(conn: sa.Connection, *, model_id: int, name: str) -> int:
    found = conn.execute(
        sa.select(Component.id).where(Component.model_id == model_id, Component.name == name)
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    result = conn.execute(sa.insert(Component).values(model_id=model_id, name=name))
    return inserted_pk(result)
