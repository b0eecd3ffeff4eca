"""FastAPI dependencies: the app's state and scope-checked API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from obliviate.service.auth import ApiKey
from obliviate.service.state import ServiceState

__all__ = ["authorize", "field_error", "get_state"]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")


async def get_state(request: Request) -> ServiceState:
    """The app's shared state (``async``: a plain read must not cost a thread-pool hop)."""
    state: ServiceState = request.app.state.obliviate
    return state


def authorize(scope: str | None) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that authenticates the caller's key and checks ``scope``.

    ``None`` accepts any valid key. Failures raise :class:`AuthError` (401 or 403). A key
    verified within ``auth_cache_seconds`` is answered from memory; otherwise the lookup
    runs in a worker thread, off the event loop.
    """

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_header)],
    ) -> ApiKey:
        state: ServiceState = request.app.state.obliviate
        secret = bearer.credentials if bearer is not None else header
        key = state.keys.cached(secret)
        if key is None:
            key = await asyncio.to_thread(state.keys.authenticate, secret)
        if scope is not None:
            state.keys.require(key, scope)
        request.state.api_key = key
        return key

    return dependency


def field_error(location: tuple[str | int, ...], message: str, value: object = None) -> None:
    """Raises a 422 in FastAPI's validation format, naming the field at ``location``."""
    raise RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": value}]
    )
