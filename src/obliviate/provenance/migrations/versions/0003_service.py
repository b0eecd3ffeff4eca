"""Service tables: the deletion-request queue, idempotency keys, API keys, model leases.

Written out by hand like 0001, matching ``obliviate/service/tables.py`` (the schema-drift
test compares them).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _epoch(name: str, *, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def upgrade() -> None:
    """Creates the four service tables and their indexes."""
    op.create_table(
        "service_requests",
        sa.Column("id", sa.String(32), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_requests")),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'completed', 'denied', 'dead')",
            name=op.f("ck_service_requests_state"),
        ),
        sa.CheckConstraint(
            "mode IN ('exact', 'approximate')", name=op.f("ck_service_requests_mode")
        ),
    )
    op.create_index(
        op.f("ix_service_requests_state_model_available_at"),
        "service_requests",
        ["state", "model", "available_at"],
    )
    op.create_index(op.f("ix_service_requests_batch_id"), "service_requests", ["batch_id"])
    op.create_table(
        "service_idempotency",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        _epoch("created_at"),
        _epoch("expires_at"),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_service_idempotency")),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["service_requests.id"],
            name=op.f("fk_service_idempotency_request_id_service_requests"),
        ),
    )
    op.create_table(
        "service_api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        _epoch("created_at"),
        _epoch("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_service_api_keys_key_hash")),
    )
    op.create_table(
        "service_model_leases",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("token", sa.Integer(), nullable=False),
        _epoch("lease_until", nullable=True),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_service_model_leases")),
    )


def downgrade() -> None:
    """Drops the service tables."""
    op.drop_table("service_model_leases")
    op.drop_table("service_api_keys")
    op.drop_table("service_idempotency")
    op.drop_index(op.f("ix_service_requests_batch_id"), table_name="service_requests")
    op.drop_index(
        op.f("ix_service_requests_state_model_available_at"), table_name="service_requests"
    )
    op.drop_table("service_requests")
