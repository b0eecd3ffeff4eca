"""A direct path for the common ``POST /v1/unlearn``: same checks, same answer, less overhead.

Why: on two cores, FastAPI's per-request machinery (routing, dependency solving, response
model encoding) cost more than everything else on the hot path together, capping durable
acceptance below the 1,000 requests/s the service is meant to sustain. This pure ASGI layer
answers a submission itself when, and only when, every check passes on the spot:

* ``POST /v1/unlearn`` with a JSON body (already size-limited by ``BodySizeLimit``);
* an API key verified recently (the auth cache) that carries ``unlearn:write``;
* a body that validates as :class:`~obliviate.service.schemas.UnlearnRequest`, in exact
  mode, within ``max_ids_per_request``, naming a model the name cache knows;
* a well-formed ``Idempotency-Key`` (or none, when none is required).

It then commits through the same :func:`~obliviate.service.routes.unlearn.accept` as the
route, so the 202 (or the 422 of a conflicting key) is the route's answer byte for byte.
Anything else (a first request with a key, a bad body, approximate mode, an unknown model)
is handed to the FastAPI app unchanged, with the body replayed, so every error keeps the one
implementation and format the API contract tests check. The OpenAPI document is the
route's: this layer adds no endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from obliviate.errors import ObliviateError
from obliviate.service.auth import ApiKey
from obliviate.service.errors import AuthError, http_status
from obliviate.service.routes.unlearn import accept, idempotency_key_of
from obliviate.service.schemas import UnlearnRequest
from obliviate.service.state import ServiceState

__all__ = ["FastSubmit"]

_PATH = "/v1/unlearn"


@dataclass(frozen=True)
class _Route:
    """What ``_HttpMetrics`` reads from ``scope["route"]`` to label the request."""

    path: str = _PATH


class FastSubmit:
    """ASGI layer answering clean ``POST /v1/unlearn`` submissions directly (see module).

    Attributes:
        handled: submissions answered here (tests and benchmarks check it moves).
    """

    def __init__(self, app: ASGIApp, *, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self.handled = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != _PATH:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect, or the size limit's refusal
                await self.app(scope, _replay(chunks, message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not await self._answer(scope, body, send):
            await self.app(scope, _replay([body], None, receive), send)

    async def _answer(self, scope: Scope, raw: bytes, send: Send) -> bool:
        """Answers the request and returns True, or returns False having sent nothing."""
        state = self.state
        settings = state.settings
        headers = _headers(scope["headers"])
        if not headers.get("content-type", "").startswith("application/json"):
            return False
        key = self._key(headers)
        if key is None:
            return False
        try:
            body = UnlearnRequest.model_validate_json(raw)
            idempotency_key = idempotency_key_of(
                headers.get("idempotency-key"), settings.require_idempotency_key
            )
        except (ValidationError, HTTPException):
            return False
        if body.mode != "exact" or len(body.sample_ids) > settings.max_ids_per_request:
            return False
        model = state.resolve_model_cached(body.model)
        if model is None:
            return False
        scope["route"] = _Route()
        try:
            accepted, extra, conflict = await accept(
                state, body=body, model=model, key=key, idempotency_key=idempotency_key
            )
        except ObliviateError as exc:  # e.g. shutting down: the route's error mapping
            response = JSONResponse({"detail": str(exc)}, status_code=http_status(exc))
        else:
            response = (
                JSONResponse({"detail": conflict}, status_code=422)
                if conflict is not None
                else JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=extra)
            )
        await response(scope, _no_body, send)
        self.handled += 1
        return True

    def _key(self, headers: dict[str, str]) -> ApiKey | None:
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        secret = credentials.strip() if scheme.lower() == "bearer" else None
        if not secret:
            secret = headers.get("x-api-key")
        key = self.state.keys.cached(secret)
        if key is None:
            return None
        try:
            self.state.keys.require(key, "unlearn:write")
        except AuthError:
            return None
        return key


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that first hands back what was read, then reads on."""
    pending: list[Message] = []
    if chunks or last is None:
        pending.append({"type": "http.request", "body": b"".join(chunks), "more_body": False})
    if last is not None:
        if pending:
            pending[0]["more_body"] = True
        pending.append(last)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _no_body() -> Message:
    # A response never reads the request; the body was consumed before answering.
    return {"type": "http.disconnect"}
