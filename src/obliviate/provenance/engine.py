"""Engines for the registry database, with SQLite made durable and properly transactional.

SQLite is the default registry, so its connections are configured for what the registry
promises (invariant 4: an acknowledged request is never lost; a version switch is one
transaction):

* ``journal_mode=WAL`` lets readers proceed while one writer commits;
* ``synchronous=FULL`` makes a commit durable before it returns, even across power loss;
* ``foreign_keys=ON`` because SQLite ignores foreign keys otherwise;
* a busy timeout, so a second process waits for the write lock instead of failing at once.

Python's ``sqlite3`` module also delays ``BEGIN`` until the first write, which lets a
transaction read data that another process changes before it writes. The engine therefore
takes over transaction control and emits ``BEGIN`` itself; connections with the execution
option ``{SQLITE_BEGIN_OPTION: "IMMEDIATE"}`` take the write lock up front, which serialises
read-check-write transactions across processes. Other backends (PostgreSQL via psycopg) are
passed through unchanged.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from obliviate.errors import ConfigError, WorkspaceError

__all__ = ["BUSY_TIMEOUT_MS", "SQLITE_BEGIN_OPTION", "create_engine", "is_sqlite_file"]

SQLITE_BEGIN_OPTION = "obliviate_sqlite_begin"
BUSY_TIMEOUT_MS = 30_000
_BEGIN_MODES = ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def is_sqlite_file(url: sa.URL) -> bool:
    """Whether ``url`` names an on-disk SQLite database (as opposed to an in-memory one)."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return database not in ("", ":memory:") and url.query.get("mode") != "memory"


def create_engine(url: str) -> sa.Engine:
    """Creates an engine for ``url``, configuring SQLite connections as the registry needs.

    Args:
        url: any SQLAlchemy URL, e.g. ``sqlite:///path/registry.db`` or
            ``postgresql+psycopg://user@host/db``.

    Returns:
        An engine; the caller owns it and should ``dispose()`` it when done.

    Raises:
        ConfigError: ``url`` is not a valid SQLAlchemy URL.
        WorkspaceError: a SQLite file URL points into a folder that does not exist.
    """
    try:
        parsed = sa.make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"database URL {url!r} is not a SQLAlchemy URL ({exc}); use e.g. "
            "'sqlite:///registry.db' or 'postgresql+psycopg://user@host/db'."
        ) from None
    if parsed.get_backend_name() != "sqlite" or parsed.get_driver_name() != "pysqlite":
        return sa.create_engine(parsed)
    on_disk = is_sqlite_file(parsed)
    if on_disk and not parsed.query.get("uri"):
        folder = Path(parsed.database or "").expanduser().resolve().parent
        if not folder.is_dir():
            raise WorkspaceError(
                f"the SQLite registry's folder {str(folder)!r} does not exist; create it "
                "(or initialise the workspace) before opening the registry."
            )
    engine = sa.create_engine(parsed)
    sa.event.listen(engine, "connect", partial(_configure_sqlite, on_disk=on_disk))
    sa.event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, connection_record: Any, *, on_disk: bool) -> None:
    # Autocommit at the driver level: we emit BEGIN ourselves in _begin_sqlite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if on_disk:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise WorkspaceError(
                    f"SQLite refused write-ahead logging (journal_mode is {mode!r}); the "
                    "registry needs a local filesystem that supports WAL, or use PostgreSQL."
                )
            cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


def _begin_sqlite(conn: sa.Connection) -> None:
    mode = str(conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")).upper()
    if mode not in _BEGIN_MODES:
        raise ConfigError(f"{SQLITE_BEGIN_OPTION} must be one of {_BEGIN_MODES}; got {mode!r}.")
    conn.exec_driver_sql(f"BEGIN {mode}")
