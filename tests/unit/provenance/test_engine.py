"""SQLite registries are durable (WAL + synchronous FULL) and enforce foreign keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from obliviate.errors import ConfigError, WorkspaceError
from obliviate.provenance import create_engine
from obliviate.provenance.engine import BUSY_TIMEOUT_MS, SQLITE_BEGIN_OPTION


def _pragma(conn: sa.Connection, name: str) -> object:
    return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_file_connections_are_durable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        # Two connections at once: the pragmas are set on each, not just the first.
        with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                assert str(_pragma(conn, "journal_mode")).lower() == "wal"
                assert _pragma(conn, "synchronous") == 2  # FULL
                assert _pragma(conn, "foreign_keys") == 1
                assert _pragma(conn, "busy_timeout") == BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                "REFERENCES parent (id))"
            )
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO child (id, parent_id) VALUES (1, 42)")
    finally:
        engine.dispose()


def test_transactions_roll_back_as_a_whole(tmp_path: Path) -> None:
    # The engine issues BEGIN itself; check that a failed transaction leaves nothing behind.
    engine = create_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with pytest.raises(sa.exc.IntegrityError), writer.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")
            conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()


def test_in_memory_sqlite_still_enforces_foreign_keys() -> None:
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            assert _pragma(conn, "foreign_keys") == 1
    finally:
        engine.dispose()


def test_other_urls_pass_through() -> None:
    engine = create_engine("postgresql+psycopg://user@localhost:5432/db")
    try:
        assert engine.dialect.name == "postgresql"
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_missing_sqlite_folder_is_a_workspace_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist"):
        create_engine(f"sqlite:///{tmp_path / 'missing' / 'registry.db'}")


def test_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        create_engine("not a url")
