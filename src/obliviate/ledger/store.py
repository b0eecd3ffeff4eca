"""SQL for the ledger tables: locking the head, writing leaves and subtrees, reading them.

All functions take an open connection, so the caller chooses the transaction: an append
locks the head row, writes a batch of leaves and the subtrees they complete, and moves the
head, all in one commit (group commit: the fsync cost is paid once per batch).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from obliviate.ledger.errors import LedgerError
from obliviate.ledger.schema import CHECKPOINTS, HEAD, LEAVES, NODES

__all__ = [
    "checkpoint_rows",
    "fetch_leaf_blocks",
    "fetch_levels",
    "fetch_subtrees",
    "init_head",
    "insert_leaves",
    "insert_nodes",
    "iter_leaves",
    "iter_nodes",
    "lock_head",
    "read_head",
    "set_size",
]

_HEAD_ID = 1
_IN_CHUNK = 400  # bound the number of bound parameters per IN query


def read_head(conn: sa.Connection) -> tuple[str, int] | None:
    """``(origin, size)``, or ``None`` if the log was never initialised."""
    row = conn.execute(sa.select(HEAD.c.origin, HEAD.c.size).where(HEAD.c.id == _HEAD_ID)).first()
    return None if row is None else (str(row.origin), int(row.size))


def init_head(conn: sa.Connection, *, origin: str | None = None) -> tuple[str, int]:
    """Creates the head row with a fresh origin (``obliviate/<random id>``) if missing."""
    head = read_head(conn)
    if head is None:
        origin = origin or f"obliviate/{uuid.uuid4().hex[:16]}"
        conn.execute(sa.insert(HEAD).values(id=_HEAD_ID, origin=origin, size=0))
        head = (origin, 0)
    return head


def lock_head(conn: sa.Connection) -> int:
    """Locks the head row for this transaction and returns the log size.

    PostgreSQL takes a row lock (``FOR UPDATE``); on SQLite the caller's ``BEGIN
    IMMEDIATE`` already holds the database write lock.
    """
    row = conn.execute(
        sa.select(HEAD.c.size).where(HEAD.c.id == _HEAD_ID).with_for_update()
    ).first()
    if row is None:
        raise LedgerError("the ledger has no head row; open it with Ledger.open first.")
    return int(row.size)


def set_size(conn: sa.Connection, size: int) -> None:
    """Moves the head to ``size`` leaves."""
    conn.execute(sa.update(HEAD).where(HEAD.c.id == _HEAD_ID).values(size=size))


def insert_leaves(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Inserts leaf rows ``{idx, leaf_hash, event_type, request_id, event}``."""
    if rows:
        conn.execute(sa.insert(LEAVES), rows)


def insert_nodes(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Inserts subtree rows ``{level, idx, hash}``."""
    if rows:
        conn.execute(sa.insert(NODES), rows)


def fetch_subtrees(
    conn: sa.Connection, keys: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Hashes of complete subtrees ``(level, index)``; level 0 is read from the leaves."""
    wanted = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    leaves = [i for lv, i in wanted if lv == 0]
    nodes = [(lv, i) for lv, i in wanted if lv > 0]
    for start in range(0, len(leaves), _IN_CHUNK):
        chunk = leaves[start : start + _IN_CHUNK]
        for row in conn.execute(
            sa.select(LEAVES.c.idx, LEAVES.c.leaf_hash).where(LEAVES.c.idx.in_(chunk))
        ):
            found[(0, int(row.idx))] = bytes(row.leaf_hash)
    for start in range(0, len(nodes), _IN_CHUNK):
        pairs = nodes[start : start + _IN_CHUNK]
        clause = sa.or_(*(sa.and_(NODES.c.level == lv, NODES.c.idx == i) for lv, i in pairs))
        query = sa.select(NODES.c.level, NODES.c.idx, NODES.c.hash).where(clause)
        for node in conn.execute(query):
            found[(int(node.level), int(node.idx))] = bytes(node.hash)
    return found


def fetch_levels(conn: sa.Connection, *, min_level: int) -> dict[tuple[int, int], bytes]:
    """Every stored subtree at ``level >= min_level``."""
    rows = conn.execute(
        sa.select(NODES.c.level, NODES.c.idx, NODES.c.hash).where(NODES.c.level >= min_level)
    )
    return {(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}


def _placeholder(conn: sa.Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _raw_rows(conn: sa.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Rows as plain DB-API tuples (no SQLAlchemy Row objects: the bulk reads need speed)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def fetch_leaf_blocks(
    conn: sa.Connection, blocks: Sequence[int], *, width: int
) -> dict[int, bytes]:
    """Leaf hashes of the aligned blocks ``[b * width, (b + 1) * width)`` (one range read).

    This is the hot path of proof generation, so it goes straight to the DB-API cursor
    (SQLAlchemy's per-row overhead would dominate the millisecond budget).
    """
    mark = _placeholder(conn)
    where = " OR ".join(f"(idx >= {mark} AND idx < {mark})" for _ in blocks)
    params = tuple(v for b in blocks for v in (b * width, (b + 1) * width))
    sql = f"SELECT idx, leaf_hash FROM {LEAVES.name} WHERE {where}"
    rows = _raw_rows(conn, sql, params)
    return {int(r[0]): bytes(r[1]) for r in rows}


def iter_leaves(
    conn: sa.Connection, *, batch: int = 50_000, with_events: bool = True
) -> Iterator[tuple[int, bytes, str]]:
    """Every leaf ``(index, stored hash, event JSON)`` in index order, in keyset batches.

    Whole-log verification reads every row, so this goes straight to the DB-API cursor.
    """
    mark = _placeholder(conn)
    event = "event" if with_events else "''"
    sql = (
        f"SELECT idx, leaf_hash, {event} FROM {LEAVES.name} WHERE idx > {mark} "
        f"ORDER BY idx LIMIT {int(batch)}"
    )
    last = -1
    while True:
        rows = _raw_rows(conn, sql, (last,))
        if not rows:
            return
        for row in rows:
            yield int(row[0]), bytes(row[1]), str(row[2])
        last = int(rows[-1][0])


def iter_nodes(conn: sa.Connection, *, batch: int = 50_000) -> Iterator[tuple[int, int, bytes]]:
    """Every stored subtree ``(level, index, hash)`` ordered by level, then index."""
    mark = _placeholder(conn)
    sql = (
        f"SELECT level, idx, hash FROM {NODES.name} WHERE level = {mark} AND idx > {mark} "
        f"ORDER BY idx LIMIT {int(batch)}"
    )
    levels = [int(r[0]) for r in conn.exec_driver_sql(f"SELECT DISTINCT level FROM {NODES.name}")]
    for level in sorted(levels):
        last = -1
        while True:
            rows = _raw_rows(conn, sql, (level, last))
            if not rows:
                break
            for row in rows:
                yield int(row[0]), int(row[1]), bytes(row[2])
            last = int(rows[-1][1])


def checkpoint_rows(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every stored checkpoint, oldest first."""
    return [
        dict(row._mapping)
        for row in conn.execute(sa.select(CHECKPOINTS).order_by(CHECKPOINTS.c.id)).all()
    ]
