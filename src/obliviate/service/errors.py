"""The service's errors, grafted onto :mod:`obliviate.errors`.

::

    ObliviateError
     └─ ServiceError(RuntimeError)             the service was misused
          ├─ UnknownRequestError(KeyError)     no deletion request has that id
          ├─ IdempotencyConflictError          a key reused with a different payload (422)
          └─ AuthError(PermissionError)        a missing, unknown, revoked or weak API key
"""

from __future__ import annotations

from obliviate.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    ObliviateError,
    ProvenanceError,
    UnknownNameError,
)

__all__ = [
    "AuthError",
    "IdempotencyConflictError",
    "ServiceError",
    "UnknownRequestError",
    "http_status",
]


class ServiceError(ObliviateError, RuntimeError):
    """The unlearning service was asked something it cannot do."""


class UnknownRequestError(ServiceError, KeyError):
    """No deletion request has the given id."""


class IdempotencyConflictError(ServiceError):
    """An ``Idempotency-Key`` was reused with a different payload."""

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class AuthError(ServiceError, PermissionError):
    """An API key is missing, unknown or revoked (401), or lacks a scope (403)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def http_status(exc: ObliviateError) -> int:
    """The HTTP status an error raised on purpose maps to (one place for every route)."""
    if isinstance(exc, AuthError):
        return exc.status
    if isinstance(exc, UnknownRequestError | UnknownNameError):
        return 404
    if isinstance(exc, NotFittedError):
        return 409
    if isinstance(exc, ConfigError | DataError):
        return 422
    if isinstance(exc, ServiceError | ProvenanceError):
        return 409
    return 500
