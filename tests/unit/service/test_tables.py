"""Migration 0003 creates exactly the tables ``obliviate.service.tables`` declares."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from obliviate.provenance import create_engine
from obliviate.provenance.migrate import VERSION_TABLE, alembic_config, upgrade
from obliviate.service.tables import metadata

SERVICE_TABLES = set(metadata.tables)


def _service_diff(engine: sa.Engine, target: sa.MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        diff = compare_metadata(context, target)

    def table_of(op: object) -> str | None:
        item = op[0] if isinstance(op, list) else op
        for part in item[1:] if isinstance(item, tuple) else ():
            name = getattr(part, "name", None)
            table = getattr(part, "table", None)
            if isinstance(part, sa.Table):
                return str(name)
            if table is not None:
                return str(table.name)
            if isinstance(part, str) and part in SERVICE_TABLES:
                return part
        return None

    return [op for op in diff if table_of(op) in SERVICE_TABLES]


def test_migration_matches_the_declared_tables(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        upgrade(engine)
        assert SERVICE_TABLES <= set(sa.inspect(engine).get_table_names())
        assert _service_diff(engine, metadata) == []
        drifted = sa.MetaData()
        for table in metadata.sorted_tables:
            table.to_metadata(drifted)
        drifted.tables["service_requests"].append_column(sa.Column("extra", sa.Integer()))
        assert _service_diff(engine, drifted)  # the comparison would notice drift
    finally:
        engine.dispose()


def test_service_revision_downgrades_cleanly(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        assert not SERVICE_TABLES & set(sa.inspect(engine).get_table_names())
        upgrade(engine)
        assert _service_diff(engine, metadata) == []
    finally:
        engine.dispose()
