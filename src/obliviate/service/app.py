"""``create_app(settings)``: the FastAPI application of the unlearning service.

The app is a thin layer: routers validate and authorise, the queue stores, the worker (a
separate process, ``obliviate worker``) forgets. Errors raised on purpose map to statuses in
one place (:func:`_install_error_handlers`), always as ``{"detail": "..."}`` bodies that say
what was wrong and what to do; validation errors keep FastAPI's format, whose ``loc`` names
the field.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obliviate.errors import ObliviateError
from obliviate.service.errors import http_status
from obliviate.service.fast_submit import FastSubmit
from obliviate.service.limits import BodySizeLimit
from obliviate.service.routes import audit, dashboard, health, models, predict, queue, unlearn
from obliviate.service.settings import ServiceSettings
from obliviate.service.state import ServiceState
from obliviate.strategies.base import ModelFactory
from obliviate.workspace import Workspace

__all__ = ["create_app"]

API_VERSION = "1"


def create_app(
    settings: ServiceSettings | None = None,
    *,
    workspace: Workspace | None = None,
    model_factories: Mapping[str, ModelFactory] | None = None,
) -> FastAPI:
    """Builds the service app over one workspace.

    Args:
        settings: the service settings (default: from ``OBLIVIATE_SERVICE_*`` variables).
        workspace: an already open workspace to serve instead of ``settings.workspace``
            (left open on shutdown).
        model_factories: ``model name -> factory`` for models trained with Python factories.

    Returns:
        The app. Its state (queue, keys, served models) lives in ``app.state.obliviate`` and
        is closed on shutdown.
    """
    settings = settings or ServiceSettings.from_env()
    state = ServiceState(settings, workspace=workspace, model_factories=model_factories)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.freeze_gc_at_startup:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            state.close()
            if settings.freeze_gc_at_startup:
                gc.unfreeze()

    app = FastAPI(
        title="obliviate unlearning service",
        version=API_VERSION,
        description=(
            "Submit deletion requests (answered 202 once durably queued), follow them to "
            "completion, fetch receipts, and predict with the served model version."
        ),
        lifespan=lifespan,
    )
    app.state.obliviate = state
    for module in (unlearn, queue, predict, models, audit, health, dashboard):
        app.include_router(module.router)
    _install_error_handlers(app)
    app.add_middleware(FastSubmit, state=state)  # innermost: inside the body limit
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_HttpMetrics, state=state)
    return app


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, ObliviateError):  # pragma: no cover - registered for ours only
            raise exc
        status = http_status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _detail(status, str(exc), headers)

    app.add_exception_handler(ObliviateError, handle)


class _HttpMetrics:
    """Counts requests and times them by route template (pure ASGI: no per-request task).

    Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and streams;
    on the POST hot path that cost more than the handler, so this one only wraps ``send``.
    """

    def __init__(self, app: ASGIApp, *, state: ServiceState) -> None:
        self.app = app
        self.metrics = state.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.http_seconds.labels(template).observe(time.perf_counter() - start)
