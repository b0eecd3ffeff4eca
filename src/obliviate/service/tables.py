"""The service's tables: the deletion-request queue, idempotency keys, API keys, model leases.

The request table *is* the queue (a transactional outbox): a request is acknowledged only
after its row commits, and workers lease rows from it, so there is no second store that
could lose an acknowledged request. ``migrations/versions/0003_service.py`` creates the same
tables by hand (``0004_follow_ups.py`` adds ``parent_id``); the schema-drift test compares
them.

Times are stored as float seconds since the Unix epoch (UTC). That compares correctly on
every backend without timezone conversions, and a double keeps microseconds for centuries.
"""

from __future__ import annotations

import sqlalchemy as sa

from obliviate.provenance.schema import NAMING_CONVENTION

__all__ = [
    "API_KEYS",
    "IDEMPOTENCY",
    "MODEL_LEASES",
    "REQUESTS",
    "REQUEST_STATES",
    "metadata",
]

#: queued -> running -> completed | denied | dead; a failed attempt goes back to queued.
REQUEST_STATES = ("queued", "running", "completed", "denied", "dead")

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _epoch(name: str, *, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Float(), nullable=nullable)


REQUESTS = sa.Table(
    "service_requests",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("method", sa.String(64), nullable=True),
    sa.Column("sample_ids", sa.JSON(), nullable=False),
    sa.Column("subject_ids", sa.JSON(), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("api_key_id", sa.String(32), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_token", sa.Integer(), nullable=True),
    _epoch("lease_until", nullable=True),
    _epoch("created_at"),
    _epoch("available_at"),
    _epoch("deadline_at"),
    _epoch("started_at", nullable=True),
    _epoch("finished_at", nullable=True),
    sa.Column("batch_id", sa.String(32), nullable=True),
    sa.Column("progress", sa.JSON(), nullable=True),
    sa.Column("result", sa.JSON(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    # The request whose completion enqueued this one (a follow-up for another model of the
    # same dataset); NULL for requests submitted through the API. Added by migration 0004.
    sa.Column("parent_id", sa.String(32), nullable=True),
    sa.CheckConstraint(
        "state IN ('queued', 'running', 'completed', 'denied', 'dead')", name="state"
    ),
    sa.CheckConstraint("mode IN ('exact', 'approximate')", name="mode"),
    sa.Index(None, "state", "model", "available_at"),
    sa.Index(None, "batch_id"),
    sa.Index(None, "parent_id"),
)

IDEMPOTENCY = sa.Table(
    "service_idempotency",
    metadata,
    sa.Column("scope", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column(
        "request_id",
        sa.String(32),
        sa.ForeignKey("service_requests.id"),
        nullable=False,
    ),
    _epoch("created_at"),
    _epoch("expires_at"),
)

API_KEYS = sa.Table(
    "service_api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.JSON(), nullable=False),
    _epoch("created_at"),
    _epoch("revoked_at", nullable=True),
    sa.UniqueConstraint("key_hash"),
)

MODEL_LEASES = sa.Table(
    "service_model_leases",
    metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("token", sa.Integer(), nullable=False),
    _epoch("lease_until", nullable=True),
)
