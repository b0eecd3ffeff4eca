"""Follow-up requests: ``service_requests.parent_id`` links a follow-up to its parent.

When a request's forget deletes samples that another model of the same dataset still
holds, the worker enqueues a follow-up request for that model; ``parent_id`` names the
request whose completion enqueued it (NULL for requests submitted through the API). Written
out by hand, matching ``obliviate/service/tables.py`` (the schema-drift test compares them).

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the nullable ``parent_id`` column and its index (existing rows stay NULL)."""
    op.add_column("service_requests", sa.Column("parent_id", sa.String(32), nullable=True))
    op.create_index(op.f("ix_service_requests_parent_id"), "service_requests", ["parent_id"])


def downgrade() -> None:
    """Drops ``parent_id`` (batch mode, so SQLite rebuilds the table where it must)."""
    op.drop_index(op.f("ix_service_requests_parent_id"), table_name="service_requests")
    with op.batch_alter_table("service_requests") as batch:
        batch.drop_column("parent_id")
