"""``/v1/queue/summary``: the queue at a glance (the dashboard's and operators' view).

Counts by state and model, SLA pressure, retries, busy workers, the latest retrains and the
latest gold-standard audit of each model. It reveals counts and timings only, never sample
or subject ids, and needs ``unlearn:read``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from obliviate.service._util import iso
from obliviate.service.auth import ApiKey
from obliviate.service.deps import authorize, get_state
from obliviate.service.schemas import GoldStandardInfo, QueueSummaryBody, RetrainInfo
from obliviate.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(prefix="/v1/queue", tags=["unlearn"])


@router.get(
    "/summary",
    response_model=QueueSummaryBody,
    responses={
        401: {"description": "Missing, unknown or revoked API key."},
        403: {"description": "The key lacks the 'unlearn:read' scope."},
    },
)
def summary(
    state: Annotated[ServiceState, Depends(get_state)],
    _key: Annotated[ApiKey, Depends(authorize("unlearn:read"))],
    retrains: Annotated[
        int, Query(ge=0, le=500, description="How many recent retrains to include.")
    ] = 50,
) -> QueueSummaryBody:
    """Queue depth, SLA pressure, recent retrain latencies and audit outcomes."""
    stats = state.metrics.stats
    now = stats.summary()
    recent = stats.recent_retrains(limit=retrains) if retrains else []
    gold = state.metrics.gold_standard
    audits = {} if gold is None else gold.latest()
    oldest = now.oldest_unfinished_at
    return QueueSummaryBody(
        generated_at=iso(now.now) or "",
        counts=dict(now.counts),
        by_model={m: dict(c) for m, c in now.by_model.items()},
        oldest_unfinished_age_seconds=None if oldest is None else max(now.now - oldest, 0.0),
        oldest_unfinished_deadline=iso(now.oldest_unfinished_deadline),
        past_deadline=now.past_deadline,
        max_sla_fraction=now.max_sla_fraction,
        retrying=now.retrying,
        leases_held=now.leases_held,
        recent_retrains=[
            RetrainInfo(
                request_id=r.request_id,
                model=r.model,
                finished_at=iso(r.finished_at) or "",
                batch_size=r.batch_size,
                retrain_seconds=r.retrain_seconds,
                shards_retrained=r.shards_retrained,
                completion_seconds=r.completion_seconds,
            )
            for r in recent
        ],
        gold_standard={
            model: GoldStandardInfo(
                ok=bool(record.get("ok")),
                recorded_at=str(record.get("recorded_at", "")),
                served_version=_int_or_none(record.get("served_version")),
            )
            for model, record in sorted(audits.items())
        },
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
