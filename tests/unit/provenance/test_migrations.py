"""The packaged migrations create exactly the schema that ``schema.py`` describes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import obliviate.ledger.schema  # noqa: F401  (declares the ledger tables on Base.metadata)
import obliviate.provenance as provenance
from obliviate.errors import WorkspaceError
from obliviate.provenance import Provenance, create_engine, current_revision, head_revision
from obliviate.provenance.migrate import VERSION_TABLE, alembic_config, upgrade
from obliviate.provenance.schema import Base
from obliviate.service.tables import metadata as service_metadata

TABLES = {
    "checkpoint_samples",
    "checkpoints",
    "components",
    "datasets",
    "deletion_samples",
    "deletions",
    "model_versions",
    "models",
    "samples",
    "version_components",
    "ledger_head",
    "ledger_leaves",
    "ledger_nodes",
    "ledger_checkpoints",
}


def _declared() -> sa.MetaData:
    """Every table the migrations create: the registry and ledger, and the service's."""
    merged = sa.MetaData()
    for metadata in (Base.metadata, service_metadata):
        for table in metadata.sorted_tables:
            table.to_metadata(merged)
    return merged


def _diff(engine: sa.Engine, metadata: sa.MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        return list(compare_metadata(context, metadata))


def test_migrations_produce_the_declared_schema(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert TABLES <= set(sa.inspect(engine).get_table_names())
        assert _diff(engine, _declared()) == []
    finally:
        engine.dispose()


def test_schema_comparison_would_notice_drift(db_url: str) -> None:
    # Guards the test above against passing vacuously.
    engine = create_engine(db_url)
    try:
        upgrade(engine)
        drifted = _declared()
        drifted.tables["samples"].append_column(sa.Column("extra", sa.Integer()))
        diff = _diff(engine, drifted)
        assert any(op[0] == "add_column" for op in diff if isinstance(op, tuple))
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_accepts_a_url(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_downgrade_then_upgrade_round_trips(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert not TABLES & set(sa.inspect(engine).get_table_names())
        upgrade(engine)
        assert _diff(engine, _declared()) == []
    finally:
        engine.dispose()


def test_connect_without_migrating_needs_a_current_schema(db_url: str) -> None:
    with pytest.raises(WorkspaceError, match="migrate=True"):
        Provenance.connect(db_url, migrate=False)
    Provenance.connect(db_url).close()
    registry = Provenance.connect(db_url, migrate=False)
    try:
        assert registry.datasets() == []
    finally:
        registry.close()


def test_public_names_are_sorted_and_importable() -> None:
    assert provenance.__all__ == sorted(provenance.__all__)
    for name in provenance.__all__:
        assert getattr(provenance, name) is not None
