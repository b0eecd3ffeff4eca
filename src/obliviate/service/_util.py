"""Small helpers shared by the service modules: ids, clocks, timestamps, fingerprints."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

__all__ = ["Clock", "fingerprint", "iso", "new_id", "wall_clock"]

#: Seconds since the Unix epoch; injectable so lease tests need not sleep.
Clock = Callable[[], float]


def wall_clock() -> float:
    """The real clock (``time.time``)."""
    return time.time()


def new_id() -> str:
    """A fresh 32-character hex id (a random UUID): unguessable, so safe in status URLs."""
    return uuid.uuid4().hex


def iso(seconds: float | None) -> str | None:
    """An epoch timestamp as ISO 8601 UTC (``None`` stays ``None``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def fingerprint(payload: Any) -> str:
    """SHA-256 of a JSON value with sorted keys: equal payloads give equal fingerprints."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
