"""API keys: hashed storage, scopes, revocation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from obliviate.errors import ConfigError
from obliviate.service.auth import ApiKeyStore
from obliviate.service.errors import AuthError, ServiceError
from obliviate.service.tables import API_KEYS


def test_keys_are_stored_hashed_and_authenticate(engine: sa.Engine) -> None:
    store = ApiKeyStore(engine)
    created = store.create(name="ops", scopes=["predict", "unlearn:read", "predict"])
    assert created.key.scopes == ("predict", "unlearn:read")
    assert created.secret.startswith(f"obl_{created.key.id}_")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(API_KEYS.c.key_hash)).scalar()
    assert stored is not None and created.secret not in stored and len(stored) == 64
    key = store.authenticate(created.secret)
    assert key.id == created.key.id and key.allows("predict") and not key.allows("admin")
    ApiKeyStore.require(key, "unlearn:read")
    with pytest.raises(AuthError, match="lacks the scope 'unlearn:write'") as info:
        ApiKeyStore.require(key, "unlearn:write")
    assert info.value.status == 403


def test_admin_carries_every_scope(engine: sa.Engine) -> None:
    key = ApiKeyStore(engine).create(name="root", scopes=["admin"]).key
    assert all(key.allows(s) for s in ("predict", "audit:read", "unlearn:write"))


@pytest.mark.parametrize(
    ("secret", "message"),
    [(None, "missing API key"), ("hunter2", "malformed"), ("obl_x_y", "unknown API key")],
)
def test_bad_secrets_are_401(engine: sa.Engine, secret: str | None, message: str) -> None:
    with pytest.raises(AuthError, match=message) as info:
        ApiKeyStore(engine).authenticate(secret)
    assert info.value.status == 401


def test_revocation_is_immediate_and_listed(engine: sa.Engine) -> None:
    store = ApiKeyStore(engine)
    created = store.create(name="temp", scopes=["predict"])
    revoked = store.revoke(created.key.id)
    assert revoked.revoked_at is not None and not revoked.active
    assert store.revoke(created.key.id).revoked_at == revoked.revoked_at
    with pytest.raises(AuthError, match="revoked"):
        store.authenticate(created.secret)
    assert [k.id for k in store.list()] == [created.key.id]
    with pytest.raises(ServiceError, match="no API key"):
        store.revoke("nope")


@pytest.mark.parametrize(("name", "scopes"), [("x", []), ("x", ["root"]), ("", ["predict"])])
def test_bad_key_requests_are_refused(engine: sa.Engine, name: str, scopes: list[str]) -> None:
    with pytest.raises(ConfigError):
        ApiKeyStore(engine).create(name=name, scopes=scopes)
    assert ApiKeyStore(engine).list() == []


def test_verified_keys_are_cached_briefly_and_revocation_still_lands(engine: sa.Engine) -> None:
    server = ApiKeyStore(engine, cache_seconds=60.0)
    admin = ApiKeyStore(engine)  # another process, e.g. `obliviate keys revoke`
    created = admin.create(name="svc", scopes=["unlearn:write"])
    assert server.cached(created.secret) is None  # not verified yet
    assert server.authenticate(created.secret).id == created.key.id
    assert server.cached(created.secret) == server.authenticate(created.secret)
    assert server.cached("obl_x_unknown") is None
    admin.revoke(created.key.id)
    assert server.cached(created.secret) is not None  # another process: seen after the TTL
    with pytest.raises(AuthError):
        server.authenticate(created.secret)  # a real lookup sees the revocation
    assert server.cached(created.secret) is None  # and drops the cached entry
    own = server.create(name="own", scopes=["predict"])
    server.authenticate(own.secret)
    server.revoke(own.key.id)
    assert server.cached(own.secret) is None  # the revoking process forgets at once
    assert ApiKeyStore(engine, cache_seconds=0.0).cached(created.secret) is None
