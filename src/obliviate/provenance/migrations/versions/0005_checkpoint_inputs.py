"""Checkpoint inputs: a checkpoint computed from other checkpoints' outputs inherits their lineage.

SISPA's aggregator is trained on the shard models' outputs, so every sample a shard saw
influenced it. Recording those samples again for each aggregator refit cost a row per
training sample; ``checkpoint_inputs`` records the shard checkpoints instead, and the
lineage queries follow these edges (one level deep). Written out by hand, matching
``obliviate/provenance/schema.py`` (the schema-drift test compares them).

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates ``checkpoint_inputs`` (checkpoint, input) with an index on the input."""
    op.create_table(
        "checkpoint_inputs",
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("input_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_checkpoint_inputs_checkpoint_id_checkpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["input_id"], ["checkpoints.id"], name=op.f("fk_checkpoint_inputs_input_id_checkpoints")
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "input_id", name=op.f("pk_checkpoint_inputs")),
    )
    op.create_index(op.f("ix_checkpoint_inputs_input_id"), "checkpoint_inputs", ["input_id"])


def downgrade() -> None:
    """Drops ``checkpoint_inputs``."""
    op.drop_index(op.f("ix_checkpoint_inputs_input_id"), table_name="checkpoint_inputs")
    op.drop_table("checkpoint_inputs")
