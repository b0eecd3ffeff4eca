"""``/metrics`` from durable state: queue gauges, finished-request histograms, audits."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from obliviate import Workspace
from obliviate.service import ServiceSettings, Worker, create_app
from obliviate.service.collectors import GoldStandardCollector, TableCollector
from obliviate.service.metrics import ServiceMetrics
from obliviate.service.queue import RequestQueue
from obliviate.service.stats import QueueStats
from tests.unit.service.conftest import FakeClock, new_request


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def test_worker_timings_reach_the_api_metrics_through_the_table(
    workspace: Workspace, settings: ServiceSettings
) -> None:
    app = create_app(settings.replace(metrics_cache_seconds=0.0), workspace=workspace)
    with TestClient(app) as client:
        state = app.state.obliviate
        headers = {
            "Authorization": f"Bearer {state.keys.create(name='t', scopes=['admin']).secret}"
        }
        for sample in ("s1", "s2", "s3"):
            response = client.post(
                "/v1/unlearn",
                json={"sample_ids": [sample], "reason": "gdpr-art17-1a"},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert response.status_code == 202
        before = client.get("/metrics").text
        assert _value(before, "obliviate_queue_depth", state="queued") == 3
        assert _value(before, "obliviate_queue_oldest_unfinished_age_seconds") >= 0
        # A separate worker object (standing in for another process) does the work.
        with Workspace.open(workspace.root) as other:
            queue = RequestQueue(other.provenance.engine, settings=settings)
            Worker(other, queue).drain(timeout=60)
        text = client.get("/metrics").text
    assert _value(text, "obliviate_queue_depth", state="completed") == 3
    assert _value(text, "obliviate_queue_depth", state="queued") == 0
    assert _value(text, "obliviate_queue_oldest_unfinished_age_seconds") == 0
    assert _value(text, "obliviate_requests_finished_total", model="m", outcome="completed") == 3
    completion = "obliviate_request_completion_seconds_count"
    assert _value(text, completion, model="m", outcome="completed") == 3
    # One coalesced batch is one retrain, whatever its size.
    assert _value(text, "obliviate_retrain_seconds_count", model="m") == 1
    assert _value(text, "obliviate_retrain_seconds_sum", model="m") > 0
    shards = _value(text, "obliviate_shard_retrain_seconds_count", model="m")
    assert 1 <= shards <= 3  # each retrained shard is one observation
    assert _value(text, "obliviate_requests_sla_missed_total", model="m") == 0
    assert _value(text, "obliviate_request_sla_fraction_bucket", model="m", le="0.001") == 3
    assert _value(text, "obliviate_database_up") == 1


def test_sla_pressure_retries_and_dead_requests(engine: sa.Engine, tmp_path: Path) -> None:
    clock = FakeClock()
    settings = ServiceSettings(
        workspace=tmp_path,
        batch_window_seconds=0.0,
        sla_seconds=100.0,
        max_attempts=2,
        retry_backoff_seconds=0.0,
    )
    queue = RequestQueue(engine, settings=settings, clock=clock)
    metrics = ServiceMetrics(queue, cache_seconds=0.0)
    first = queue.submit(new_request("m", "s1")).request_id
    clock.advance(30)
    queue.submit(new_request("m", "s2"))
    clock.advance(50)  # first is 80 % through its SLA
    summary = metrics.stats.summary()
    assert summary.max_sla_fraction == pytest.approx(0.8)
    assert summary.past_deadline == 0 and summary.oldest_unfinished_at is not None
    clock.advance(40)  # first is past its deadline
    text = metrics.render().decode()
    assert _value(text, "obliviate_queue_past_deadline") == 1
    assert _value(text, "obliviate_queue_max_sla_fraction") == pytest.approx(1.2)
    lease = queue.claim(owner="w")
    assert lease is not None
    for request in lease.requests:
        assert queue.fail(lease, request.id, error="boom") == "queued"
    queue.release(lease)
    assert _value(metrics.render().decode(), "obliviate_queue_retrying") == 2
    lease = queue.claim(owner="w")
    assert lease is not None
    for request in lease.requests:
        assert queue.fail(lease, request.id, error="boom") == "dead"
    text = metrics.render().decode()
    assert _value(text, "obliviate_requests_finished_total", model="m", outcome="dead") == 2
    assert _value(text, "obliviate_request_retries_total", model="m") == 2
    assert _value(text, "obliviate_requests_sla_missed_total", model="m") == 1  # only first
    assert _value(text, "obliviate_queue_retrying") == 0
    assert queue.get(first).state == "dead"


def test_aggregates_are_cached_between_scrapes(engine: sa.Engine, tmp_path: Path) -> None:
    queue = RequestQueue(engine, settings=ServiceSettings(workspace=tmp_path))
    collector = TableCollector(QueueStats(engine), cache_seconds=3600.0)
    first = {m.name: m for m in collector.collect()}
    queue.submit(new_request("m", "s1"))
    cached = {m.name: m for m in collector.collect()}
    depth = {s.labels["state"]: s.value for s in cached["obliviate_queue_depth"].samples}
    assert depth["queued"] == 0 and set(first) == set(cached)


def test_an_unreachable_database_is_reported_not_raised(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")
    families = list(TableCollector(QueueStats(engine)).collect())
    assert [(f.name, f.samples[0].value) for f in families] == [("obliviate_database_up", 0.0)]


def _audit(root: Path, name: str, *, model: str, ok: bool, at: str) -> Path:
    directory = root / "audits" / "gold-standard"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    record = {
        "kind": "gold_standard_audit",
        "format_version": 1,
        "model": model,
        "ok": ok,
        "recorded_at": at,
        "served_version": 3,
    }
    path.write_text(json.dumps(record))
    return path


def test_gold_standard_breach_follows_the_latest_audit(tmp_path: Path) -> None:
    collector = GoldStandardCollector(tmp_path)
    assert [f.samples for f in collector.collect()] == [[], []]  # no audits yet
    _audit(tmp_path, "1.json", model="m", ok=True, at="2026-01-01T00:00:00+00:00")
    _audit(tmp_path, "2.json", model="m", ok=False, at="2026-01-02T00:00:00+00:00")
    _audit(tmp_path, "3.json", model="n", ok=True, at="2026-01-01T00:00:00+00:00")
    (tmp_path / "audits" / "gold-standard" / "torn.json").write_text('{"kind": "gold')
    breach, when = collector.collect()
    assert {s.labels["model"]: s.value for s in breach.samples} == {"m": 1.0, "n": 0.0}
    stamps = {s.labels["model"]: s.value for s in when.samples}
    assert stamps["m"] == pytest.approx(1_767_312_000.0)
    _audit(tmp_path, "4.json", model="m", ok=True, at="2026-01-03T00:00:00+00:00")
    breach, _ = collector.collect()
    assert {s.labels["model"]: s.value for s in breach.samples}["m"] == 0.0
