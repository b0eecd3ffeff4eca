"""Runs the registry's Alembic migrations from code, with no ``alembic.ini`` on disk.

The migration scripts ship inside the package (``obliviate/provenance/migrations``), so an
installed obliviate can always bring its registry to the schema it expects. Upgrades run in
one transaction on a single connection: on PostgreSQL DDL is transactional and guarded by an
advisory lock, and on SQLite the write lock is taken up front, so two processes opening the
same registry at once cannot both try to create it.

The version table is called :data:`VERSION_TABLE` rather than Alembic's default so that
other components may keep their own Alembic history in the same database.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from obliviate.provenance.engine import SQLITE_BEGIN_OPTION, create_engine

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "obliviate_provenance_version"
# Arbitrary constant key for pg_advisory_xact_lock ("oblv" in ASCII).
_PG_LOCK_KEY = 0x6F626C76


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, built in memory.

    Args:
        connection: when given, ``env.py`` migrates through it instead of opening its own.
    """
    config = Config()
    # ConfigParser interpolates '%', so escape it in the path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of obliviate."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return str(head)


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database at ``engine`` is at, or ``None`` if it was never migrated."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        revision = context.get_current_revision()
    return None if revision is None else str(revision)


def upgrade(engine_or_url: sa.Engine | str, *, revision: str = "head") -> None:
    """Brings the registry schema up to ``revision`` (``alembic upgrade head`` by default).

    Safe to call on every start: an up-to-date database is left untouched.

    Args:
        engine_or_url: an engine (left open) or a URL (an engine is made and disposed).
        revision: the target revision.
    """
    if isinstance(engine_or_url, str):
        engine = create_engine(engine_or_url)
        try:
            _upgrade(engine, revision)
        finally:
            engine.dispose()
    else:
        _upgrade(engine_or_url, revision)


def _upgrade(engine: sa.Engine, revision: str) -> None:
    writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    with writer.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        command.upgrade(alembic_config(conn), revision)
