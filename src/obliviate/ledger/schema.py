"""The ledger's tables, in the registry database (created by migration ``0002``).

They hang off the provenance :data:`~obliviate.provenance.schema.Base` metadata so that
one Alembic history and one schema-drift test cover both.

* ``ledger_head``: one row (id 1): the log's origin and size. Appenders lock it, so leaf
  indices stay dense and sequential across processes (``FOR UPDATE`` on PostgreSQL; the
  SQLite write lock is taken at ``BEGIN IMMEDIATE``).
* ``ledger_leaves``: leaf index, leaf hash, and the RFC 8785 JSON of the event.
* ``ledger_nodes``: hashes of complete subtrees at level >= 1, written as they complete,
  so any proof needs O(log n) point reads.
* ``ledger_checkpoints``: every signed checkpoint issued (C2SP note text).
"""

from __future__ import annotations

import sqlalchemy as sa

from obliviate.provenance.schema import Base, UTCDateTime

__all__ = ["CHECKPOINTS", "HEAD", "LEAVES", "NODES"]

_meta = Base.metadata

HEAD = sa.Table(
    "ledger_head",
    _meta,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("origin", sa.String(200), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
)

LEAVES = sa.Table(
    "ledger_leaves",
    _meta,
    sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("event", sa.Text(), nullable=False),
    sa.Index(None, "request_id"),
)

NODES = sa.Table(
    "ledger_nodes",
    _meta,
    sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

CHECKPOINTS = sa.Table(
    "ledger_checkpoints",
    _meta,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("key_id", sa.String(8), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "size"),
)
