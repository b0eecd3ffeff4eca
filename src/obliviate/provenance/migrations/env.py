"""Alembic environment for the provenance registry.

Normally run through :func:`obliviate.provenance.migrate.upgrade`, which hands over an open
connection in ``config.attributes["connection"]`` so that the whole upgrade happens inside
the caller's transaction (and, on SQLite, under the engine's durable pragmas). Running the
``alembic`` command line against a config with ``sqlalchemy.url`` set works too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

# The ledger declares its tables on the same metadata; import it so autogenerate sees them.
import obliviate.ledger.schema  # noqa: F401
from obliviate.errors import WorkspaceError
from obliviate.provenance.engine import create_engine
from obliviate.provenance.migrate import VERSION_TABLE
from obliviate.provenance.schema import Base


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise WorkspaceError(
            "offline (--sql) migrations are not supported for the provenance registry; run "
            "them against a database with obliviate.provenance.migrate.upgrade(url)."
        )
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise WorkspaceError(
            "no database to migrate: pass a connection in config.attributes['connection'] or "
            "set sqlalchemy.url in the Alembic config."
        )
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
