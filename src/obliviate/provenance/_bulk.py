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

__all__ = ["bulk_insert"]

_PLAIN = (int, str, type(None))


def bulk_insert(conn: sa.Connection, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """Inserts ``rows`` (dicts keyed by column name, all with the same keys) into ``model``.

    Values must be plain scalars (ints, strings, booleans, aware datetimes, ``None``): the
    ``COPY`` path bypasses SQLAlchemy's type processing, so JSON columns are not supported.
    """
    if not rows:
        return
    table = model.__table__
    if not isinstance(table, sa.Table):  # pragma: no cover - declarative models map tables
        raise TypeError(f"{model.__name__} is not mapped to a table")
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy(conn, table, rows)
        return
    columns = list(rows[0])
    if conn.dialect.name == "sqlite" and all(
        isinstance(value, _PLAIN) for row in rows for value in row.values()
    ):
        # Rows of plain ints and strings need none of SQLAlchemy's per-row type processing;
        # the driver's own executemany is several times faster (a SISPA aggregator records
        # every training sample on each refit).
        quote = conn.dialect.identifier_preparer
        statement = (
            f"INSERT INTO {quote.format_table(table)} "
            f"({', '.join(quote.quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        for part in chunks(rows, ROW_CHUNK):
            conn.exec_driver_sql(statement, [tuple(row[c] for c in columns) for row in part])
        return
    for part in chunks(rows, ROW_CHUNK):
        conn.execute(sa.insert(table), list(part))


def _copy(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(rows[0])
    quote = conn.dialect.identifier_preparer
    target = quote.format_table(table)
    names = ", ".join(quote.quote(c) for c in columns)
    raw = conn.connection.driver_connection
    if raw is None:  # pragma: no cover - an open Connection always has one
        raise RuntimeError("no DBAPI connection behind the SQLAlchemy connection")
    with raw.cursor() as cursor, cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])
