"""Audit events: what the ledger records about each deletion request, as plain JSON dicts.

Every event has ``type``, ``v`` (schema version), ``request_id``, ``model`` and ``time``
(RFC 3339, UTC, microseconds) plus fields of its type. Events never carry a raw subject or
sample id or a free-text reason: the builders take pseudonyms and digests only (made by
:class:`~obliviate.ledger.pseudonym.Pseudonymizer`), so nothing personal can reach a leaf.

===========================  ==============================================================
type                         type-specific fields
===========================  ==============================================================
``request_received``         guarantee, subjects, samples, reason_digest
``plan``                     version_before, affected_components, earliest_slices,
                             forgotten, already_deleted
``components_rolled_back``   from_version, to_version, changes [{component, old, new}]
``components_retrained``     from_version, to_version, changes [{component, old, new}]
``version_activated``        version {number, content_hash, kind}
``request_completed``        guarantee, noop, version_before, version_after, forgotten,
                             samples_commitment, evidence
``request_failed``           error (the exception's class name only: messages may hold ids)
``key_rotated``              old_key, new_key (verifier keys)
===========================  ==============================================================

``new`` is ``null`` in a change when a component was deactivated (no earlier checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from obliviate.ledger.errors import LedgerError

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "component_changes",
    "event",
    "rfc3339",
]

SCHEMA_VERSION = 1
EVENT_TYPES = (
    "components_retrained",
    "components_rolled_back",
    "key_rotated",
    "plan",
    "request_completed",
    "request_failed",
    "request_received",
    "version_activated",
)
_COMMON = ("type", "v", "request_id", "model", "time")


def rfc3339(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as RFC 3339 UTC with microseconds, e.g. ``...T12:00:00.5Z``."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(
    type: str, *, request_id: str, model: str, time: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An audit event of ``type`` with the common fields filled in.

    Raises:
        LedgerError: an unknown type, or a field that clashes with a common one.
    """
    if type not in EVENT_TYPES:
        raise LedgerError(f"unknown audit event type {type!r}; known: {', '.join(EVENT_TYPES)}.")
    clash = sorted(set(fields) & set(_COMMON))
    if clash:
        raise LedgerError(f"audit event fields {clash} are reserved.")
    return {
        "type": type,
        "v": SCHEMA_VERSION,
        "request_id": request_id,
        "model": model,
        "time": time or rfc3339(),
        **fields,
    }


def component_changes(
    before: Mapping[str, str | None], after: Mapping[str, str | None]
) -> list[dict[str, str | None]]:
    """Per component whose checkpoint differs: ``{component, old, new}`` (sorted by name)."""
    names = sorted(set(before) | set(after))
    return [
        {"component": n, "old": before.get(n), "new": after.get(n)}
        for n in names
        if before.get(n) != after.get(n)
    ]


def require_fields(data: Mapping[str, Any], names: Sequence[str], *, where: str) -> None:
    """Raises a :class:`LedgerError` naming the first of ``names`` missing from ``data``."""
    for name in names:
        if name not in data:
            raise LedgerError(f"{where} has no {name!r} field.")
