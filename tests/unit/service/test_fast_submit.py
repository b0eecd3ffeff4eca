"""The direct POST path: same answers as the route, taken only when every check passes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from obliviate import Workspace
from obliviate.service import ApiKeyStore, ServiceSettings, create_app
from obliviate.service.fast_submit import FastSubmit

BODY = {"sample_ids": ["s1", "s2"], "reason": "gdpr-art17-1a"}


@pytest.fixture
def app(workspace: Workspace, settings: ServiceSettings) -> FastAPI:
    return create_app(settings.replace(max_ids_per_request=5), workspace=workspace)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _fast(app: FastAPI) -> FastSubmit:
    layer: Any = app.middleware_stack
    while not isinstance(layer, FastSubmit):
        layer = layer.app
    return layer


def _secret(app: FastAPI, *scopes: str) -> str:
    store: ApiKeyStore = app.state.obliviate.keys
    return store.create(name="t", scopes=scopes).secret


def _post(client: TestClient, secret: str, body: dict[str, Any], key: str) -> Any:
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": key}
    return client.post("/v1/unlearn", json=body, headers=headers)


def test_a_known_key_takes_the_direct_path_and_the_row_is_committed(
    client: TestClient, app: FastAPI
) -> None:
    secret = _secret(app, "unlearn:write")
    first = _post(client, secret, BODY, uuid.uuid4().hex)  # verifies and caches the key
    fast = _fast(app)
    assert first.status_code == 202 and fast.handled == 0
    second = _post(client, secret, {**BODY, "sample_ids": ["s3"]}, uuid.uuid4().hex)
    assert second.status_code == 202 and fast.handled == 1
    body = second.json()
    assert second.headers["Location"] == f"/v1/unlearn/{body['id']}"
    assert second.headers["Retry-After"] == first.headers["Retry-After"]
    assert set(body) == set(first.json()) and body["status"] == "queued"
    assert app.state.obliviate.queue.get(body["id"]).sample_ids == ("s3",)
    metrics = client.get("/metrics").text
    # Both submissions are counted under the route's template, whichever path answered.
    assert (
        'obliviate_http_requests_total{method="POST",route="/v1/unlearn",status="202"} 2.0'
        in metrics
    )


def test_a_replay_is_the_same_bytes_on_both_paths(client: TestClient, app: FastAPI) -> None:
    secret = _secret(app, "unlearn:write")
    original = _post(client, secret, BODY, "order-7")  # route (key not cached yet)
    direct = _post(client, secret, BODY, "order-7")
    assert _fast(app).handled == 1
    app.state.obliviate.keys._cache.clear()  # the next one goes through the route again
    routed = _post(client, secret, BODY, "order-7")
    assert _fast(app).handled == 1
    assert direct.status_code == routed.status_code == 202
    assert direct.content == routed.content
    assert direct.json()["id"] == original.json()["id"]
    assert direct.headers["Idempotent-Replayed"] == routed.headers["Idempotent-Replayed"]
    for name in ("content-type", "location", "retry-after"):
        assert direct.headers[name] == routed.headers[name]


def test_a_conflicting_key_is_the_same_422_on_both_paths(client: TestClient, app: FastAPI) -> None:
    secret = _secret(app, "unlearn:write")
    _post(client, secret, BODY, "order-8")
    direct = _post(client, secret, {**BODY, "sample_ids": ["s9"]}, "order-8")
    app.state.obliviate.keys._cache.clear()
    routed = _post(client, secret, {**BODY, "sample_ids": ["s9"]}, "order-8")
    assert direct.status_code == routed.status_code == 422
    assert direct.content == routed.content and "different payload" in direct.json()["detail"]
    assert _fast(app).handled == 1


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"sample_ids": ["s1"]}, {}, 422),  # no reason: FastAPI's error names the field
        ({**BODY, "sample_ids": [f"s{i}" for i in range(9)]}, {}, 422),  # over the limit
        ({**BODY, "mode": "approximate", "method": "nope"}, {}, 422),  # approximate: route
        ({**BODY, "model": "other"}, {}, 404),  # a model the name cache does not know
        (BODY, {"Idempotency-Key": "x" * 300}, 400),
    ],
)
def test_anything_unusual_falls_back_to_the_route(
    client: TestClient,
    app: FastAPI,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
) -> None:
    secret = _secret(app, "unlearn:write")
    assert _post(client, secret, BODY, uuid.uuid4().hex).status_code == 202  # caches the key
    response = client.post(
        "/v1/unlearn",
        json=body,
        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "k-1", **headers},
    )
    assert response.status_code == status
    assert "detail" in response.json()
    assert _fast(app).handled == 0


def test_a_key_without_the_scope_gets_the_routes_403(client: TestClient, app: FastAPI) -> None:
    secret = _secret(app, "unlearn:read")
    for _ in range(2):  # the second time the key is cached: still the route's answer
        response = _post(client, secret, BODY, uuid.uuid4().hex)
        assert response.status_code == 403 and "unlearn:write" in response.json()["detail"]
    assert _fast(app).handled == 0


def test_the_app_freezes_the_collector_while_it_runs(
    workspace: Workspace, settings: ServiceSettings
) -> None:
    import gc

    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings, workspace=workspace)):
        assert gc.get_freeze_count() > 0  # start-up objects are out of the collector's view
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings.replace(freeze_gc_at_startup=False), workspace=workspace)):
        assert gc.get_freeze_count() == 0
