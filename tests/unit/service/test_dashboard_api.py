"""The dashboard's page and the read endpoints it uses: summary, recent requests, scopes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from obliviate import Workspace
from obliviate.service import ServiceSettings, Worker, create_app


@pytest.fixture
def app(workspace: Workspace, settings: ServiceSettings) -> FastAPI:
    return create_app(settings.replace(metrics_cache_seconds=0.0), workspace=workspace)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _headers(app: FastAPI, *scopes: str) -> dict[str, str]:
    secret = app.state.obliviate.keys.create(name="t", scopes=scopes).secret
    return {"Authorization": f"Bearer {secret}"}


def _submit(client: TestClient, headers: dict[str, str], *ids: str) -> str:
    response = client.post(
        "/v1/unlearn",
        json={"sample_ids": list(ids), "reason": "gdpr-art17-1a"},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 202
    return str(response.json()["id"])


def test_summary_lists_queue_retrains_and_audits(app: FastAPI, client: TestClient) -> None:
    admin = _headers(app, "admin")
    _submit(client, admin, "s1")
    _submit(client, admin, "s2", "s3")
    state = app.state.obliviate
    Worker(state.workspace, state.queue).drain(timeout=60)
    queued = _submit(client, admin, "s4")
    audits = state.workspace.root / "audits" / "gold-standard"
    audits.mkdir(parents=True)
    record = {"kind": "gold_standard_audit", "model": "m", "ok": False, "recorded_at": "2026-01-01"}
    (audits / "a.json").write_text(json.dumps(record))
    body = client.get("/v1/queue/summary", headers=_headers(app, "unlearn:read")).json()
    assert body["counts"] == {"queued": 1, "running": 0, "completed": 2, "denied": 0, "dead": 0}
    assert body["by_model"] == {"m": {"completed": 2, "queued": 1}}
    assert body["past_deadline"] == 0 and 0 <= body["max_sla_fraction"] < 1e-3
    assert body["oldest_unfinished_age_seconds"] >= 0
    [retrain] = body["recent_retrains"]  # both requests coalesced into one retrain
    assert retrain["batch_size"] == 2 and retrain["retrain_seconds"] > 0
    assert retrain["shards_retrained"] >= 1 and retrain["model"] == "m"
    assert body["gold_standard"]["m"]["ok"] is False
    assert client.get("/v1/queue/summary?retrains=0", headers=admin).json()["recent_retrains"] == []
    assert queued in {r["id"] for r in client.get("/v1/unlearn", headers=admin).json()["requests"]}


def test_recent_requests_newest_first_with_limit_and_status(
    app: FastAPI, client: TestClient
) -> None:
    admin = _headers(app, "admin")
    ids = [_submit(client, admin, f"s{i}") for i in range(1, 4)]
    listed = client.get("/v1/unlearn?limit=2", headers=admin).json()["requests"]
    assert [r["id"] for r in listed] == ids[::-1][:2]
    assert listed[0]["status"] == "queued" and "sample_ids" not in listed[0]
    done = client.get("/v1/unlearn?status=completed", headers=admin).json()
    assert done == {"requests": []}
    assert client.get("/v1/unlearn?limit=0", headers=admin).status_code == 422
    assert client.get("/v1/unlearn?status=lost", headers=admin).status_code == 422


@pytest.mark.parametrize("path", ["/v1/queue/summary", "/v1/unlearn"])
def test_read_endpoints_need_the_read_scope(app: FastAPI, client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    denied = client.get(path, headers=_headers(app, "unlearn:write", "predict"))
    assert denied.status_code == 403 and "unlearn:read" in denied.json()["detail"]


def test_dashboard_is_static_public_and_locked_down(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for element in ("key-form", "queue-table", "requests-table", "models-table", "retrain-chart"):
        assert f'id="{element}"' in page.text
    script = client.get("/dashboard/dashboard.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert ".innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert "sessionStorage" in script.text
    assert client.get("/dashboard/dashboard.css").status_code == 200
    assert "/dashboard" not in client.get("/openapi.json").json()["paths"]
