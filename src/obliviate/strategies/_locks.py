"""One lock per model within a process: forgets of one model run one at a time.

A second forget waits for the first to finish (its retrain included), so a version is never
activated on top of a plan made before another deletion. Keyed by registry URL and model
name, so every strategy instance of one model in this process shares the lock.
"""

from __future__ import annotations

import threading

__all__ = ["model_lock"]

_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def model_lock(registry_url: object, model: str) -> threading.Lock:
    """The process-wide lock of ``model`` in the registry at ``registry_url``."""
    with _GUARD:
        return _LOCKS.setdefault(f"{registry_url}:{model}", threading.Lock())
