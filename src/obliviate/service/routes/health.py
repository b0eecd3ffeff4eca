"""``/healthz`` and ``/metrics``: liveness for load balancers, numbers for Prometheus.

Neither needs a key: health checks and scrapers usually run without one, and neither
reveals anything about data subjects (counts only).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from obliviate.service.deps import get_state
from obliviate.service.metrics import CONTENT_TYPE
from obliviate.service.schemas import Health
from obliviate.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(tags=["operations"])
_log = logging.getLogger(__name__)


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database is unreachable."}},
)
def healthz(state: Annotated[ServiceState, Depends(get_state)]) -> Response | Health:
    """Whether the database answers; the queue depth by state."""
    try:
        counts = state.queue.counts()
    except Exception as exc:  # noqa: BLE001 - any database failure means unavailable
        _log.warning("health check failed: %s", exc)
        body = Health(status="unavailable", database=type(exc).__name__, queue={})
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", database="ok", queue=counts)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(state: Annotated[ServiceState, Depends(get_state)]) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
