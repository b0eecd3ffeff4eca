"""API keys with scopes: only SHA-256 hashes are stored, never the keys.

A key is ``obl_<id>_<secret>`` with a 256-bit random secret, shown once by ``obliviate keys
create``. Because the secret is uniformly random and long, a single SHA-256 is enough (a slow
password hash protects *guessable* secrets; nothing here is guessable), and a lookup by hash
leaks nothing about the key through timing.

A server verifies each key against the database at most once per ``auth_cache_seconds``
(1 s by default) and answers from memory in between, which keeps a query off the hot path;
a revocation therefore takes effect within that time (at once in the revoking process).

Scopes separate the roles: ``unlearn:write`` submits deletions, ``unlearn:read`` reads their
status and receipts, ``predict`` queries models, ``audit:read`` reads the audit log, and
``admin`` implies all of them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from obliviate.errors import ConfigError
from obliviate.provenance.engine import SQLITE_BEGIN_OPTION
from obliviate.service._util import Clock, wall_clock
from obliviate.service.errors import AuthError, ServiceError
from obliviate.service.tables import API_KEYS

__all__ = ["SCOPES", "ApiKey", "ApiKeyStore", "CreatedKey"]

SCOPES = ("admin", "audit:read", "predict", "unlearn:read", "unlearn:write")
_PREFIX = "obl_"
_CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the secret): id, name, scopes and lifecycle."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether this key carries ``scope`` (``admin`` carries every scope)."""
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class CreatedKey:
    """A new key: the record plus the secret, which is shown once and never stored."""

    key: ApiKey
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ConfigError(
            f"API key scopes must be a non-empty subset of {list(SCOPES)}; got {list(scopes)}."
        )
    return tuple(sorted(set(scopes)))


class ApiKeyStore:
    """Creates, lists, revokes and checks API keys in the workspace database."""

    def __init__(
        self, engine: sa.Engine, *, clock: Clock = wall_clock, cache_seconds: float = 0.0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    def cached(self, secret: str | None) -> ApiKey | None:
        """The key for ``secret`` if it was verified within ``cache_seconds``, else ``None``.

        The cache keeps the SHA-256 of the secret, never the secret, and only keys that
        verified as active; a revocation is therefore seen within ``cache_seconds``.
        """
        if not secret or self.cache_seconds <= 0:
            return None
        hit = self._cache.get(_hash(secret))
        if hit is None or time.monotonic() - hit[0] > self.cache_seconds:
            return None
        return hit[1]

    def create(self, *, name: str, scopes: Sequence[str]) -> CreatedKey:
        """Makes a key; the returned secret is the only copy there will ever be.

        Raises:
            ConfigError: an empty name or an unknown scope.
        """
        if not name.strip() or len(name) > 200:
            raise ConfigError(f"API key names are 1-200 characters; got {name!r}.")
        checked = _check_scopes(scopes)
        key_id = secrets.token_hex(6)
        secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = self.clock()
        with self._writer.begin() as conn:
            conn.execute(
                sa.insert(API_KEYS).values(
                    id=key_id,
                    name=name,
                    key_hash=_hash(secret),
                    scopes=list(checked),
                    created_at=now,
                    revoked_at=None,
                )
            )
        return CreatedKey(ApiKey(key_id, name, checked, now, None), secret)

    def list(self) -> list[ApiKey]:
        """Every key, oldest first (revoked ones included, marked)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(API_KEYS).order_by(API_KEYS.c.created_at)).mappings()
            return [self._record(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revokes a key at once; revoking twice keeps the first revocation time.

        Raises:
            ServiceError: no key has that id.
        """
        with self._writer.begin() as conn:
            conn.execute(
                sa.update(API_KEYS)
                .where(API_KEYS.c.id == key_id, API_KEYS.c.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
            self._cache.clear()  # this process sees its own revocations at once
            row = conn.execute(sa.select(API_KEYS).where(API_KEYS.c.id == key_id)).mappings()
            found = row.first()
        if found is None:
            raise ServiceError(f"no API key has id {key_id!r}; see `obliviate keys list`.")
        return self._record(found)

    def authenticate(self, secret: str | None) -> ApiKey:
        """The active key whose secret this is.

        Raises:
            AuthError: (401) no key given, an unknown key, or a revoked one.
        """
        if not secret:
            raise AuthError(
                "missing API key: send 'Authorization: Bearer <key>' (create one with "
                "`obliviate keys create`).",
                status=401,
            )
        if not secret.startswith(_PREFIX) or len(secret) > 200:
            raise AuthError("malformed API key: obliviate keys start with 'obl_'.", status=401)
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(API_KEYS).where(API_KEYS.c.key_hash == _hash(secret)))
                .mappings()
                .first()
            )
        if row is None:
            raise AuthError("unknown API key.", status=401)
        key = self._record(row)
        if not key.active:
            self._cache.pop(row["key_hash"], None)
            raise AuthError(f"API key {key.id} was revoked.", status=401)
        if self.cache_seconds > 0:
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.clear()
            self._cache[row["key_hash"]] = (time.monotonic(), key)
        return key

    @staticmethod
    def require(key: ApiKey, scope: str) -> None:
        """Raises a 403 :class:`AuthError` unless ``key`` carries ``scope``."""
        if not key.allows(scope):
            raise AuthError(
                f"API key {key.id} lacks the scope {scope!r} (it has {list(key.scopes)}); "
                "create a key with that scope.",
                status=403,
            )

    @staticmethod
    def _record(row: sa.RowMapping) -> ApiKey:
        return ApiKey(
            id=row["id"],
            name=row["name"],
            scopes=tuple(row["scopes"]),
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )
