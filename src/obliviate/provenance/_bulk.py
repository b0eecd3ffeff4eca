"""Fast multi-row inserts for the registry's large tables (samples and sample links).

Registering a dataset or a checkpoint writes tens of thousands of rows. Plain
``executemany`` is fast on SQLite but sends one statement per row to PostgreSQL, which is
about ten times slower than ``COPY``; on psycopg we therefore stream rows with ``COPY ...
FROM STDIN`` on the same connection, inside the caller's transaction, so a failure still
rolls everything back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from obliviate.provenance._util import ROW_CHUNK, chunks
from obliviate.provenance.schema import Base

__all__ = ["bulk_insert", "bulk_insert_tuples"]

_PLAIN = (int, str, type(None))


def bulk_insert(conn: sa.Connection, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """Inserts ``rows`` (dicts keyed by column name, all with the same keys) into ``model``.

    Values must be plain scalars (ints, strings, booleans, aware datetimes, ``None``): the
    ``COPY`` path bypasses SQLAlchemy's type processing, so JSON columns are not supported.
    """
    if not rows:
        return
    columns = list(rows[0])
    plain = conn.dialect.name == "sqlite" and all(
        isinstance(value, _PLAIN) for row in rows for value in row.values()
    )
    if plain or _copies(conn):
        bulk_insert_tuples(conn, model, columns, [tuple(row[c] for c in columns) for row in rows])
        return
    table = _table(model)
    for part in chunks(rows, ROW_CHUNK):
        conn.execute(sa.insert(table), list(part))


def bulk_insert_tuples(
    conn: sa.Connection,
    model: type[Base],
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Inserts positional ``rows`` of plain ints, strings and ``None`` into ``columns``.

    The fast path for callers that build rows of known plain types (a checkpoint's sample
    links): no per-row dicts and no type checks. On SQLite the driver's own ``executemany``
    runs several times faster than SQLAlchemy's per-row processing; on psycopg it is
    ``COPY``.
    """
    if not rows:
        return
    table = _table(model)
    if _copies(conn):
        _copy(conn, table, list(columns), rows)
        return
    if conn.dialect.name != "sqlite":
        keyed = [dict(zip(columns, row, strict=True)) for row in rows]
        for batch in chunks(keyed, ROW_CHUNK):
            conn.execute(sa.insert(table), list(batch))
        return
    quote = conn.dialect.identifier_preparer
    statement = (
        f"INSERT INTO {quote.format_table(table)} "
        f"({', '.join(quote.quote(c) for c in columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    for part in chunks(rows, ROW_CHUNK):
        conn.exec_driver_sql(statement, list(part))


def _copies(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def _table(model: type[Base]) -> sa.Table:
    table = model.__table__
    if not isinstance(table, sa.Table):  # pragma: no cover - declarative models map tables
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def _copy(
    conn: sa.Connection, table: sa.Table, columns: list[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    quote = conn.dialect.identifier_preparer
    target = quote.format_table(table)
    names = ", ".join(quote.quote(c) for c in columns)
    raw = conn.connection.driver_connection
    if raw is None:  # pragma: no cover - an open Connection always has one
        raise RuntimeError("no DBAPI connection behind the SQLAlchemy connection")
    with raw.cursor() as cursor, cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
