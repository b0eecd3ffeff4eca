"""``/v1/unlearn``: submit deletion requests, follow them, fetch their receipts.

A submission answers 202 only after its row is durably committed (through the group
committer). ``Idempotency-Key`` follows draft-ietf-httpapi-idempotency-key-header: 400 when
missing (if required) or malformed, 422 when reused with a different payload, and a replay
of the first 202 otherwise. A concurrent duplicate waits for the first insert's commit and
then replays it, so the "409 still processing" case of the draft cannot arise here: the
stored response is a pure function of the committed row.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi import Path as PathParam

from obliviate.service._util import fingerprint, iso
from obliviate.service.auth import ApiKey
from obliviate.service.deps import authorize, field_error, get_state
from obliviate.service.errors import IdempotencyConflictError
from obliviate.service.queue import NewRequest, RequestRecord
from obliviate.service.schemas import (
    ComponentProgress,
    UnlearnAccepted,
    UnlearnList,
    UnlearnRequest,
    UnlearnStatus,
)
from obliviate.service.state import ServiceState

__all__ = ["accept", "check_size", "idempotency_key_of", "router"]

router = APIRouter(prefix="/v1/unlearn", tags=["unlearn"])

REQUEST_ID = r"^[0-9a-f]{32}$"
_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, unknown or revoked API key."},
    403: {"description": "The key lacks the needed scope."},
}
State = Annotated[ServiceState, Depends(get_state)]


def idempotency_key_of(raw: str | None, required: bool) -> str | None:
    """The checked ``Idempotency-Key`` (an sf-string unquoted), or a 400 saying what is wrong."""
    if raw is None:
        if required:
            raise HTTPException(
                400,
                "the Idempotency-Key header is required: send a unique key per deletion "
                "request (e.g. a UUID) so a retried POST cannot create a second request.",
            )
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':  # an sf-string
        key = key[1:-1]
    if not _KEY.match(key):
        raise HTTPException(
            400, "Idempotency-Key must be 1-255 printable ASCII characters (an sf-string)."
        )
    return key


def _check_approximate(state: ServiceState, model: str, method: str) -> None:
    from obliviate.strategies import STRATEGIES
    from obliviate.strategies.approximate import METHODS
    from obliviate.strategies.base import Strategy

    if method not in METHODS:
        field_error(
            ("body", "method"),
            f"unknown approximate method {method!r}; choose one of {METHODS.names()}.",
            method,
        )
    strategy = STRATEGIES.get(state.workspace.provenance.model(model).strategy)
    if strategy._forget_approximately is Strategy._forget_approximately:
        field_error(
            ("body", "mode"),
            f"model {model!r} (strategy {strategy.name!r}) cannot forget approximately; "
            "use mode 'exact'.",
            "approximate",
        )


@router.post(
    "",
    status_code=202,
    response_model=UnlearnAccepted,
    responses={
        **_ERRORS,
        400: {"description": "Idempotency-Key missing or malformed."},
        413: {"description": "Body larger than max_body_bytes."},
        422: {"description": "Invalid body, or an Idempotency-Key reused with another body."},
    },
)
async def submit(
    body: UnlearnRequest,
    response: Response,
    state: State,
    key: Annotated[ApiKey, Depends(authorize("unlearn:write"))],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> UnlearnAccepted:
    """Queues a deletion request; 202 + ``Location`` once it is durably committed."""
    settings = state.settings
    checked_key = idempotency_key_of(idempotency_key, settings.require_idempotency_key)
    check_size(body, settings.max_ids_per_request)
    cached = state.resolve_model_cached(body.model)
    model: str = (
        cached if cached is not None else await asyncio.to_thread(state.resolve_model, body.model)
    )
    if body.mode == "approximate" and body.method is not None:
        await asyncio.to_thread(_check_approximate, state, model, body.method)
    accepted, headers, conflict = await accept(
        state, body=body, model=model, key=key, idempotency_key=checked_key
    )
    if conflict is not None:
        raise HTTPException(422, conflict)
    response.headers.update(headers)
    return accepted


def check_size(body: UnlearnRequest, limit: int) -> None:
    """A 422 naming ``sample_ids`` when a request has more ids than ``max_ids_per_request``."""
    if len(body.sample_ids) > limit:
        field_error(
            ("body", "sample_ids"),
            f"at most {limit} sample ids per request (max_ids_per_request); got "
            f"{len(body.sample_ids)}. Split the request.",
        )


async def accept(
    state: ServiceState,
    *,
    body: UnlearnRequest,
    model: str,
    key: ApiKey,
    idempotency_key: str | None,
) -> tuple[UnlearnAccepted, dict[str, str], str | None]:
    """Commits a checked request through the group committer; shared by the route and the
    :class:`~obliviate.service.fast_submit.FastSubmit` path so both answer alike.

    Returns:
        ``(body, headers, conflict)``: the 202 body and its headers, or the message of an
        Idempotency-Key reused with another payload (a 422) in ``conflict``.
    """
    payload = body.model_dump(mode="json")
    payload["model"] = model
    request = NewRequest(
        model=model,
        mode=body.mode,
        method=body.method,
        sample_ids=tuple(body.sample_ids),
        subject_ids=() if body.subject_id is None else (body.subject_id,),
        reason=body.reason,
        note=body.note,
        api_key_id=key.id,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint(payload),
    )
    outcome = await asyncio.wrap_future(state.committer.submit(request))
    if isinstance(outcome, IdempotencyConflictError):
        state.metrics.submissions.labels("conflict").inc()
        return _NO_BODY, {}, str(outcome)
    state.metrics.submissions.labels("accepted" if outcome.created else "replayed").inc()
    location = f"/v1/unlearn/{outcome.request_id}"
    headers = {
        "Location": location,
        "Retry-After": str(max(1, round(state.settings.batch_window_seconds))),
    }
    if not outcome.created:
        headers["Idempotent-Replayed"] = "true"
    accepted = UnlearnAccepted(
        id=outcome.request_id,
        status=outcome.state,
        model=model,
        created_at=iso(outcome.created_at) or "",
        deadline=iso(outcome.deadline_at) or "",
        location=location,
        replayed=not outcome.created,
    )
    return accepted, headers, None


_NO_BODY = UnlearnAccepted(
    id="", status="", model="", created_at="", deadline="", location="", replayed=False
)


def _status(record: RequestRecord) -> UnlearnStatus:
    progress = dict(record.progress or {})
    components = progress.get("components") or {}
    sla_met = None if record.finished_at is None else record.finished_at <= record.deadline_at
    result = None if record.result is None else dict(record.result)
    if result is not None:
        result.pop("receipt", None)  # served by the receipt endpoint
    return UnlearnStatus(
        id=record.id,
        model=record.model,
        status=record.state,  # type: ignore[arg-type]
        mode=record.mode,
        method=record.method,
        reason=record.reason,
        attempts=record.attempts,
        created_at=iso(record.created_at) or "",
        started_at=iso(record.started_at),
        finished_at=iso(record.finished_at),
        deadline=iso(record.deadline_at) or "",
        sla_met=sla_met,
        stage=progress.get("stage"),
        progress=[
            ComponentProgress(component=str(c), state=str(s)) for c, s in sorted(components.items())
        ],
        result=result,
        error=record.error,
        receipt=f"/v1/unlearn/{record.id}/receipt" if record.state == "completed" else None,
        parent_id=record.parent_id,
        follow_ups=list(record.follow_up_ids),
    )


@router.get(
    "",
    response_model=UnlearnList,
    responses=_ERRORS,
)
def recent(
    state: State,
    _key: Annotated[ApiKey, Depends(authorize("unlearn:read"))],
    limit: Annotated[int, Query(ge=1, le=500, description="How many requests.")] = 50,
    only: Annotated[
        Literal["queued", "running", "completed", "denied", "dead"] | None,
        Query(alias="status", description="Only requests in this state."),
    ] = None,
) -> UnlearnList:
    """Recent deletion requests, newest first (optionally only one state)."""
    records = state.queue.recent(state=only, limit=limit)
    return UnlearnList(requests=[_status(r) for r in records])


@router.get(
    "/{request_id}",
    response_model=UnlearnStatus,
    responses={**_ERRORS, 404: {"description": "No request has this id."}},
)
def status(
    request_id: Annotated[str, PathParam(pattern=REQUEST_ID)],
    state: State,
    _key: Annotated[ApiKey, Depends(authorize("unlearn:read"))],
) -> UnlearnStatus:
    """The request's state, attempts, deadline and per-component progress."""
    return _status(state.queue.get(request_id))


@router.get(
    "/{request_id}/receipt",
    responses={
        **_ERRORS,
        404: {"description": "No request has this id, or no receipt exists."},
        409: {"description": "The request has not completed yet."},
    },
)
def receipt(
    request_id: Annotated[str, PathParam(pattern=REQUEST_ID)],
    state: State,
    _key: Annotated[ApiKey, Depends(authorize("unlearn:read"))],
) -> dict[str, Any]:
    """The signed deletion receipt of a completed request (shared by a coalesced batch)."""
    record = state.queue.get(request_id)
    if record.state != "completed" or record.result is None:
        raise HTTPException(
            409,
            f"request {request_id} is {record.state}; a receipt exists once it completes.",
        )
    stored = record.result.get("receipt")
    if stored:
        return dict(stored)
    lead = str(record.result.get("receipt_request_id") or request_id)
    path = Path(state.workspace.root) / "receipts" / f"{lead}.json"
    if path.is_file():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    raise HTTPException(
        404,
        f"no receipt was issued for request {request_id}: this workspace keeps no audit "
        "ledger (or the request completed before it had one).",
    )
