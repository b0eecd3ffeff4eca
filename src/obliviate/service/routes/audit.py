"""``/v1/audit``: the signed tree head of the audit log and proofs against it.

``GET /v1/audit/checkpoint`` returns the latest signed checkpoint (a C2SP signed note),
signing a fresh one when entries were appended since. ``GET /v1/audit/proof`` returns an
inclusion proof (a leaf, or every event of a request, in a tree of a given size) or, with
``old_size``, a consistency proof between two tree sizes. Hashes are base64 as in RFC 9162
and the checkpoint note. Events hold pseudonyms and digests only, never raw ids.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from obliviate.service.auth import ApiKey
from obliviate.service.deps import authorize, field_error, get_state
from obliviate.service.state import ServiceState

if TYPE_CHECKING:
    from obliviate.ledger import Ledger

__all__ = ["router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"])
State = Annotated[ServiceState, Depends(get_state)]
AuditKey = Annotated[ApiKey, Depends(authorize("audit:read"))]
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing, unknown or revoked API key."},
    403: {"description": "The key lacks the 'audit:read' scope."},
    404: {"description": "This workspace keeps no audit ledger, or nothing matches."},
}
_MAX = 2**53 - 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _ledger(state: ServiceState) -> Ledger:
    ledger: Ledger | None = getattr(state.workspace, "ledger", None)
    if ledger is None:
        raise HTTPException(404, "this workspace keeps no audit ledger.")
    return ledger


def _note_size(note: str) -> int:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else -1


@router.get("/checkpoint", responses=_ERRORS)
def checkpoint(state: State, _key: AuditKey) -> dict[str, Any]:
    """The latest signed checkpoint of the audit log and the keys that verify it."""
    ledger = _ledger(state)
    note = ledger.latest_checkpoint()
    size = ledger.size
    if note is None or _note_size(note) < size:
        note = ledger.checkpoint().note
    return {
        "origin": ledger.origin,
        "size": _note_size(note),
        "note": note,
        "public_keys": [key.vkey for key in ledger.public_keys()],
    }


@router.get("/proof", responses={**_ERRORS, 422: {"description": "Inconsistent parameters."}})
def proof(
    state: State,
    _key: AuditKey,
    tree_size: Annotated[int | None, Query(ge=0, le=_MAX)] = None,
    leaf_index: Annotated[int | None, Query(ge=0, le=_MAX)] = None,
    request_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")] = None,
    old_size: Annotated[int | None, Query(ge=0, le=_MAX)] = None,
) -> dict[str, Any]:
    """An inclusion proof (``leaf_index`` or ``request_id``) or a consistency proof
    (``old_size``), in the tree of ``tree_size`` leaves (default: the whole log)."""
    ledger = _ledger(state)
    given = [
        n
        for n, v in (("leaf_index", leaf_index), ("request_id", request_id), ("old_size", old_size))
        if v is not None
    ]
    if len(given) != 1:
        field_error(
            ("query", given[1] if len(given) > 1 else "leaf_index"),
            f"give exactly one of leaf_index, request_id or old_size; got {given or 'none'}.",
        )
    size = ledger.size if tree_size is None else tree_size
    if size > ledger.size:
        field_error(("query", "tree_size"), f"the log has only {ledger.size} leaves.", size)
    if old_size is not None:
        if old_size > size:
            field_error(("query", "old_size"), f"old_size must be <= tree_size ({size}).")
        hashes = ledger.consistency_proof(old_size, size)
        return {
            "kind": "consistency",
            "old_size": old_size,
            "tree_size": size,
            "old_root": _b64(ledger.root(old_size)),
            "root": _b64(ledger.root(size)),
            "proof": [_b64(h) for h in hashes],
        }
    if request_id is not None:
        indices = [i for i, _ in ledger.events_for(request_id) if i < size]
        if not indices:
            raise HTTPException(404, f"no audit event of request {request_id} in that tree.")
    else:
        index = leaf_index or 0  # exactly one parameter was given, so this is leaf_index
        if index >= size:
            field_error(("query", "leaf_index"), f"must be < tree_size ({size}).", index)
        indices = [index]
    return {
        "kind": "inclusion",
        "tree_size": size,
        "root": _b64(ledger.root(size)),
        "leaves": [
            {
                "leaf_index": i,
                "leaf_hash": _b64(ledger.leaf_hash(i)),
                "event": ledger.read_event(i),
                "proof": [_b64(h) for h in ledger.inclusion_proof(i, size)],
            }
            for i in indices
        ],
    }
