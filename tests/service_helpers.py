"""Registry checks shared by the service tests (unit and integration)."""

from __future__ import annotations

import sqlalchemy as sa

from obliviate.provenance.schema import DeletionSample
from obliviate.workspace import Workspace


def deletions_per_sample(ws: Workspace) -> dict[int, int]:
    """Sample primary key -> how many deletion requests recorded it (1 = deleted once)."""
    table = DeletionSample.__table__
    with ws.provenance.engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.sample_pk, sa.func.count()).group_by(table.c.sample_pk)
        ).all()
    return {int(pk): int(n) for pk, n in rows}
