"""The HTTP contract: every endpoint, its success shape and each of its errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from obliviate import Workspace
from obliviate.service import ApiKeyStore, RequestQueue, ServiceSettings, Worker, create_app
from obliviate.testing import make_blobs

SCOPES = ("unlearn:write", "unlearn:read", "predict", "audit:read")


@pytest.fixture
def app(workspace: Workspace, settings: ServiceSettings) -> FastAPI:
    return create_app(
        settings.replace(max_body_bytes=4096, max_ids_per_request=5), workspace=workspace
    )


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _key(app: FastAPI, *scopes: str) -> dict[str, str]:
    store: ApiKeyStore = app.state.obliviate.keys
    return {"Authorization": f"Bearer {store.create(name='t', scopes=scopes).secret}"}


@pytest.fixture
def full(app: FastAPI) -> dict[str, str]:
    return _key(app, *SCOPES)


def _post(
    client: TestClient, headers: dict[str, str], body: dict[str, object], key: str | None = None
) -> object:
    extra = {"Idempotency-Key": key or uuid.uuid4().hex}
    return client.post("/v1/unlearn", json=body, headers={**headers, **extra})


def _drain(app: FastAPI) -> None:
    state = app.state.obliviate
    Worker(state.workspace, state.queue).drain(timeout=60)


# ------------------------------------------------------------------------------- unlearn
def test_post_unlearn_answers_202_after_commit_and_completes(
    client: TestClient, app: FastAPI, full: dict[str, str]
) -> None:
    response = _post(client, full, {"sample_ids": ["s1", "s2"], "reason": "gdpr-art17-1a"})
    assert response.status_code == 202  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    location = response.headers["Location"]  # type: ignore[attr-defined]
    assert location == f"/v1/unlearn/{body['id']}" and body["status"] == "queued"
    assert body["model"] == "m" and body["deadline"].endswith("Z") and not body["replayed"]
    queue: RequestQueue = app.state.obliviate.queue
    assert queue.get(body["id"]).state == "queued"  # committed before the 202
    queued = client.get(location, headers=full).json()
    assert queued["status"] == "queued" and queued["receipt"] is None
    _drain(app)
    done = client.get(location, headers=full).json()
    assert done["status"] == "completed" and done["attempts"] == 1 and done["sla_met"] is True
    assert done["result"]["guarantee"] == "exact"
    assert done["result"]["forgotten_requested_ids"] == 2
    assert done["stage"] == "done" and done["progress"]
    assert {p["state"] for p in done["progress"]} <= {"retrained"}
    receipt = client.get(done["receipt"], headers=full)
    assert receipt.status_code == 200
    assert receipt.json()  # the ledger's signed receipt


def test_subject_requests_and_explicit_model(
    client: TestClient, app: FastAPI, full: dict[str, str]
) -> None:
    response = _post(client, full, {"model": "m", "subject_id": "u1", "reason": "ccpa-1798.105"})
    assert response.status_code == 202  # type: ignore[attr-defined]
    _drain(app)
    status = client.get(response.headers["Location"], headers=full).json()  # type: ignore[attr-defined]
    assert status["status"] == "completed" and status["result"]["batch_forgotten"] == 10


def test_idempotency_key_replays_conflicts_and_is_required(
    client: TestClient, full: dict[str, str]
) -> None:
    body = {"sample_ids": ["s3"], "reason": "gdpr-art17-1a"}
    first = _post(client, full, body, key="order-1")
    again = _post(client, full, body, key="order-1")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]  # type: ignore[attr-defined]
    assert again.headers["Idempotent-Replayed"] == "true"  # type: ignore[attr-defined]
    changed = _post(client, full, {**body, "sample_ids": ["s4"]}, key="order-1")
    assert changed.status_code == 422 and "different payload" in changed.json()["detail"]  # type: ignore[attr-defined]
    missing = client.post("/v1/unlearn", json=body, headers=full)
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["detail"]
    bad = client.post("/v1/unlearn", json=body, headers={**full, "Idempotency-Key": "x" * 300})
    assert bad.status_code == 400


def test_validation_errors_name_the_field(client: TestClient, full: dict[str, str]) -> None:
    cases = {
        "reason": {"sample_ids": ["s1"]},
        "mode": {"sample_ids": ["s1"], "reason": "x", "mode": "fast"},
        "extra": {"sample_ids": ["s1"], "reason": "x", "surprise": 1},
        "model": {"sample_ids": ["s1"], "reason": "x", "model": "../etc"},
    }
    for field, body in cases.items():
        response = _post(client, full, body)
        assert response.status_code == 422, field  # type: ignore[attr-defined]
        locations = [e["loc"] for e in response.json()["detail"]]  # type: ignore[attr-defined]
        assert any(field in loc or (field == "extra" and "surprise" in loc) for loc in locations)
    neither = _post(client, full, {"reason": "x"})
    assert neither.status_code == 422  # type: ignore[attr-defined]
    assert "sample_ids or subject_id" in neither.text  # type: ignore[attr-defined]
    too_many = _post(client, full, {"sample_ids": [f"s{i}" for i in range(6)], "reason": "x"})
    assert too_many.status_code == 422  # type: ignore[attr-defined]
    assert too_many.json()["detail"][0]["loc"] == ["body", "sample_ids"]  # type: ignore[attr-defined]
    unknown = _post(client, full, {"sample_ids": ["s1"], "reason": "x", "model": "nope"})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]  # type: ignore[attr-defined]


def test_approximate_mode_is_validated(client: TestClient, full: dict[str, str]) -> None:
    no_method = _post(client, full, {"sample_ids": ["s1"], "reason": "x", "mode": "approximate"})
    assert no_method.status_code == 422 and "method is required" in no_method.text  # type: ignore[attr-defined]
    bad = _post(
        client, full, {"sample_ids": ["s1"], "reason": "x", "mode": "approximate", "method": "zz"}
    )
    assert bad.status_code == 422  # type: ignore[attr-defined]
    assert bad.json()["detail"][0]["loc"] == ["body", "method"]  # type: ignore[attr-defined]
    exact_with_method = _post(
        client, full, {"sample_ids": ["s1"], "reason": "x", "method": "finetune"}
    )
    assert exact_with_method.status_code == 422  # type: ignore[attr-defined]


def test_approximate_request_runs_its_method(
    client: TestClient, app: FastAPI, full: dict[str, str]
) -> None:
    body = {"sample_ids": ["s5"], "reason": "x", "mode": "approximate", "method": "finetune"}
    response = _post(client, full, body)
    assert response.status_code == 202  # type: ignore[attr-defined]
    _drain(app)
    status = client.get(response.headers["Location"], headers=full).json()  # type: ignore[attr-defined]
    assert status["status"] == "completed", status["error"]
    assert status["result"]["guarantee"] == "approximate"
    assert status["result"]["method"] == "finetune"


def test_unknown_ids_are_denied_by_the_worker(
    client: TestClient, app: FastAPI, full: dict[str, str]
) -> None:
    response = _post(client, full, {"sample_ids": ["s1", "ghost"], "reason": "x"})
    _drain(app)
    status = client.get(response.headers["Location"], headers=full).json()  # type: ignore[attr-defined]
    assert status["status"] == "denied" and "not registered" in status["error"]
    receipt = client.get(f"{response.headers['Location']}/receipt", headers=full)  # type: ignore[attr-defined]
    assert receipt.status_code == 409 and "denied" in receipt.json()["detail"]


def test_status_errors(client: TestClient, full: dict[str, str]) -> None:
    assert client.get(f"/v1/unlearn/{'0' * 32}", headers=full).status_code == 404
    malformed = client.get("/v1/unlearn/not-an-id", headers=full)
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"][-1] == "request_id"
    assert client.get(f"/v1/unlearn/{'0' * 32}/receipt", headers=full).status_code == 404


def test_body_limit_gives_413(client: TestClient, full: dict[str, str]) -> None:
    body = {"sample_ids": ["x" * 250] * 20, "reason": "x"}
    response = _post(client, full, body)
    assert response.status_code == 413  # type: ignore[attr-defined]
    assert "max_body_bytes" in response.json()["detail"]  # type: ignore[attr-defined]


def test_streamed_body_over_the_limit_gives_413(client: TestClient, full: dict[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = client.post(
        "/v1/unlearn",
        content=chunks(),
        headers={**full, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


# ------------------------------------------------------------------------------------ auth
def test_auth_errors_are_401_and_403_with_clear_bodies(client: TestClient, app: FastAPI) -> None:
    body = {"sample_ids": ["s1"], "reason": "x"}
    missing = client.post("/v1/unlearn", json=body)
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer obl_nope_nope"})
    assert wrong.status_code == 401 and "unknown API key" in wrong.json()["detail"]
    malformed = client.get("/v1/models", headers={"X-API-Key": "hello"})
    assert malformed.status_code == 401 and "malformed" in malformed.json()["detail"]
    reader = _key(app, "unlearn:read")
    forbidden = _post(client, reader, body)
    assert forbidden.status_code == 403  # type: ignore[attr-defined]
    assert "unlearn:write" in forbidden.json()["detail"]  # type: ignore[attr-defined]
    assert (
        client.post("/v1/predict", json={"features": [[0.0] * 6]}, headers=reader).status_code
        == 403
    )
    admin = _key(app, "admin")
    assert client.get("/v1/audit/checkpoint", headers=admin).status_code == 200
    store: ApiKeyStore = app.state.obliviate.keys
    key_id = store.list()[-1].id
    store.revoke(key_id)
    revoked = client.get("/v1/audit/checkpoint", headers=admin)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_x_api_key_header_works(client: TestClient, app: FastAPI) -> None:
    secret = _key(app, "predict")["Authorization"].split()[1]
    assert client.get("/v1/models", headers={"X-API-Key": secret}).status_code == 200


# --------------------------------------------------------------------- predict and models
def test_predict_uses_the_active_version_and_swaps_after_a_forget(
    client: TestClient, app: FastAPI, full: dict[str, str], workspace: Workspace
) -> None:
    x = make_blobs(n=60, subjects=6).features[:5].tolist()
    first = client.post("/v1/predict", json={"features": x}, headers=full)
    assert first.status_code == 200
    body = first.json()
    active = workspace.provenance.active_version("m")
    assert active is not None and body["version"] == active.number
    assert len(body["labels"]) == 5 and np.allclose(np.sum(body["probabilities"], axis=1), 1.0)
    assert body["components_total"] == 3
    _post(client, full, {"sample_ids": ["s1"], "reason": "x"})
    _drain(app)
    # The server trusts a loaded version for model_refresh_seconds; past that it must swap.
    # (Without this wait a fast drain finishes inside the window and the test is flaky.)
    time.sleep(app.state.obliviate.settings.model_refresh_seconds + 0.05)
    after = client.post("/v1/predict", json={"features": x}, headers=full).json()
    newest = workspace.provenance.active_version("m")
    assert newest is not None and after["version"] == newest.number > body["version"]


def test_predict_validation(client: TestClient, app: FastAPI, full: dict[str, str]) -> None:
    wrong_shape = client.post("/v1/predict", json={"features": [[0.0, 1.0]]}, headers=full)
    assert wrong_shape.status_code == 422
    assert wrong_shape.json()["detail"][0]["loc"] == ["body", "features"]
    ragged = client.post("/v1/predict", json={"features": [[0.0], [1.0, 2.0]]}, headers=full)
    assert ragged.status_code == 422
    empty = client.post("/v1/predict", json={"features": []}, headers=full)
    assert empty.status_code == 422
    flat = client.post("/v1/predict", json={"features": [1.0, 2.0]}, headers=full)
    assert flat.status_code == 422
    rows = app.state.obliviate.settings.max_predict_rows
    assert rows > 5
    unknown = client.post(
        "/v1/predict", json={"model": "zz", "features": [[0.0] * 6]}, headers=full
    )
    assert unknown.status_code == 404


def test_models_endpoints(client: TestClient, full: dict[str, str], workspace: Workspace) -> None:
    listing = client.get("/v1/models", headers=full).json()["models"]
    assert [m["name"] for m in listing] == ["m"] and listing[0]["strategy"] == "sisa"
    active = listing[0]["active_version"]
    detail = client.get("/v1/models/m", headers=full).json()
    assert detail["active_version"] == active
    assert any(v["number"] == active and v["status"] == "active" for v in detail["versions"])
    version = client.get(f"/v1/models/m/versions/{active}", headers=full).json()
    assert version["number"] == active and len(version["components"]) == 3
    assert client.get("/v1/models/zz", headers=full).status_code == 404
    assert client.get("/v1/models/m/versions/999", headers=full).status_code in (404, 409)
    assert client.get("/v1/models/m/versions/0", headers=full).status_code == 422


# ------------------------------------------------------------------------ audit and ops
def test_audit_checkpoint_and_proofs(
    client: TestClient, app: FastAPI, full: dict[str, str]
) -> None:
    response = _post(client, full, {"sample_ids": ["s2"], "reason": "x"})
    request_id = response.json()["id"]  # type: ignore[attr-defined]
    _drain(app)
    checkpoint = client.get("/v1/audit/checkpoint", headers=full).json()
    assert checkpoint["size"] >= 2 and checkpoint["note"].startswith(checkpoint["origin"])
    assert checkpoint["public_keys"]
    inclusion = client.get(f"/v1/audit/proof?request_id={request_id}", headers=full).json()
    assert inclusion["kind"] == "inclusion" and inclusion["leaves"]
    assert all(leaf["event"]["request_id"] == request_id for leaf in inclusion["leaves"])
    one = client.get("/v1/audit/proof?leaf_index=0&tree_size=1", headers=full).json()
    assert one["leaves"][0]["proof"] == []
    consistency = client.get(
        f"/v1/audit/proof?old_size=1&tree_size={checkpoint['size']}", headers=full
    )
    assert consistency.json()["kind"] == "consistency"
    both = client.get("/v1/audit/proof?leaf_index=0&old_size=1", headers=full)
    assert both.status_code == 422
    too_big = client.get("/v1/audit/proof?leaf_index=0&tree_size=99999", headers=full)
    assert too_big.status_code == 422 and too_big.json()["detail"][0]["loc"] == [
        "query",
        "tree_size",
    ]
    nothing = client.get(f"/v1/audit/proof?request_id={'f' * 32}", headers=full)
    assert nothing.status_code == 404


def test_healthz_metrics_and_openapi(client: TestClient, full: dict[str, str]) -> None:
    _post(client, full, {"sample_ids": ["s1"], "reason": "x"})
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["queue"]["queued"] == 1
    metrics = client.get("/metrics").text
    assert 'obliviate_queue_depth{state="queued"} 1.0' in metrics
    assert 'obliviate_unlearn_submissions_total{outcome="accepted"} 1.0' in metrics
    assert 'route="/v1/unlearn",status="202"' in metrics
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/unlearn",
        "/v1/unlearn/{request_id}",
        "/v1/unlearn/{request_id}/receipt",
        "/v1/predict",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/audit/checkpoint",
        "/v1/audit/proof",
        "/healthz",
        "/metrics",
    } <= paths


def test_healthz_reports_an_unreachable_database(client: TestClient, app: FastAPI) -> None:
    state = app.state.obliviate

    def broken() -> dict[str, int]:
        raise OSError("disk gone")

    state.queue.counts = broken
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"
