"""The durable queue on SQLite and PostgreSQL: idempotency, leases, fencing, retries, batching."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from obliviate.service.errors import IdempotencyConflictError, UnknownRequestError
from obliviate.service.queue import RequestQueue
from obliviate.service.settings import ServiceSettings
from obliviate.service.tables import MODEL_LEASES, REQUESTS
from tests.unit.service.conftest import FakeClock, new_request


def test_submit_commits_a_queued_request_with_its_deadline(
    queue: RequestQueue, clock: FakeClock
) -> None:
    submitted = queue.submit(new_request("m", "s1", "s2"))
    assert submitted.created and submitted.state == "queued"
    record = queue.get(submitted.request_id)
    assert record.sample_ids == ("s1", "s2")
    assert record.state == "queued" and record.attempts == 0
    assert record.created_at == clock.now
    assert record.deadline_at == clock.now + 3600.0
    assert queue.counts() == {"queued": 1, "running": 0, "completed": 0, "denied": 0, "dead": 0}


def test_get_unknown_request_raises(queue: RequestQueue) -> None:
    with pytest.raises(UnknownRequestError, match="no deletion request"):
        queue.get("0" * 32)


def test_idempotency_key_replays_and_detects_a_changed_payload(queue: RequestQueue) -> None:
    first = queue.submit(new_request("m", "s1", key="abc"))
    again = queue.submit(new_request("m", "s1", key="abc"))
    assert not again.created and again.request_id == first.request_id
    with pytest.raises(IdempotencyConflictError, match="different payload") as info:
        queue.submit(new_request("m", "s2", key="abc"))
    assert info.value.request_id == first.request_id
    assert queue.counts()["queued"] == 1


def test_duplicates_inside_one_group_commit_are_stored_once(queue: RequestQueue) -> None:
    outcomes = queue.submit_many(
        [
            new_request("m", "s1", key="k"),
            new_request("m", "s1", key="k"),
            new_request("m", "s9", key="k"),
            new_request("m", "s2"),
        ]
    )
    first, replay, conflict, other = outcomes
    assert not isinstance(first, IdempotencyConflictError)
    assert not isinstance(replay, IdempotencyConflictError)
    assert first.created and not replay.created and replay.request_id == first.request_id
    assert isinstance(conflict, IdempotencyConflictError)
    assert not isinstance(other, IdempotencyConflictError) and other.created
    assert queue.counts()["queued"] == 2


def test_expired_idempotency_keys_are_forgotten(
    queue: RequestQueue, clock: FakeClock, settings: ServiceSettings
) -> None:
    first = queue.submit(new_request("m", "s1", key="k"))
    clock.advance(settings.idempotency_retention_seconds + 1)
    second = queue.submit(new_request("m", "s2", key="k"))
    assert second.created and second.request_id != first.request_id


def test_claim_coalesces_a_models_requests_and_leases_the_model(queue: RequestQueue) -> None:
    ids = [queue.submit(new_request("m", f"s{i}")).request_id for i in range(3)]
    other = queue.submit(new_request("other", "s1")).request_id
    lease = queue.claim(owner="w1")
    assert lease is not None and lease.token == 1
    assert {r.id for r in lease.requests} == set(ids) and lease.model == "m"
    assert all(r.state == "running" and r.attempts == 1 for r in lease.requests)
    assert len({r.batch_id for r in lease.requests}) == 1
    # A second worker cannot take model m, only the other one.
    second = queue.claim(owner="w2")
    assert second is not None and [r.id for r in second.requests] == [other]
    assert queue.claim(owner="w3") is None


def test_batching_window_delays_the_claim_so_requests_can_join(
    engine: sa.Engine, settings: ServiceSettings, clock: FakeClock
) -> None:
    queue = RequestQueue(engine, settings=settings.replace(batch_window_seconds=5.0), clock=clock)
    queue.submit(new_request("m", "s1"))
    clock.advance(3)
    queue.submit(new_request("m", "s2"))
    assert queue.claim(owner="w") is None  # the oldest has waited 3 s of 5
    clock.advance(2.5)
    lease = queue.claim(owner="w")
    assert lease is not None and len(lease.requests) == 2  # both, in one batch


def test_max_batch_caps_a_claim(
    engine: sa.Engine, settings: ServiceSettings, clock: FakeClock
) -> None:
    queue = RequestQueue(engine, settings=settings.replace(max_batch=2), clock=clock)
    for i in range(3):
        queue.submit(new_request("m", f"s{i}"))
    lease = queue.claim(owner="w")
    assert lease is not None and len(lease.requests) == 2
    queue.release(lease)
    rest = queue.claim(owner="w")
    assert rest is not None and len(rest.requests) == 1


def test_earliest_deadline_is_claimed_first(
    engine: sa.Engine, settings: ServiceSettings, clock: FakeClock
) -> None:
    late = RequestQueue(engine, settings=settings.replace(sla_seconds=9000.0), clock=clock)
    late.submit(new_request("slow", "s1"))
    clock.advance(1)
    early = RequestQueue(engine, settings=settings.replace(sla_seconds=10.0), clock=clock)
    early.submit(new_request("urgent", "s1"))
    lease = early.claim(owner="w")
    assert lease is not None and lease.model == "urgent"


def test_complete_is_fenced_against_a_stale_worker(
    queue: RequestQueue, clock: FakeClock, settings: ServiceSettings
) -> None:
    request_id = queue.submit(new_request()).request_id
    stale = queue.claim(owner="slow")
    assert stale is not None
    clock.advance(settings.lease_seconds + 1)  # the slow worker stalls past its lease
    fresh = queue.claim(owner="fast")
    assert fresh is not None and fresh.token == stale.token + 1
    assert fresh.requests[0].attempts == 2  # redelivered
    assert queue.complete(fresh, request_id, result={"by": "fast"})
    assert not queue.complete(stale, request_id, result={"by": "slow"})
    assert not queue.deny(stale, request_id, error="late")
    assert queue.fail(stale, request_id, error="late") is None
    assert queue.heartbeat(stale) is None
    record = queue.get(request_id)
    assert record.state == "completed" and record.result == {"by": "fast"}


def test_heartbeat_keeps_a_long_job_leased(
    queue: RequestQueue, clock: FakeClock, settings: ServiceSettings
) -> None:
    request_id = queue.submit(new_request()).request_id
    lease = queue.claim(owner="w")
    assert lease is not None
    for _ in range(3):
        clock.advance(settings.lease_seconds * 0.6)
        renewed = queue.heartbeat(lease)
        assert renewed is not None and renewed.until == clock.now + settings.lease_seconds
        lease = renewed
    assert queue.claim(owner="other") is None  # still leased after 1.8 lease lengths
    assert queue.complete(lease, request_id, result={})


def test_failures_retry_with_backoff_then_die(
    queue: RequestQueue, clock: FakeClock, settings: ServiceSettings
) -> None:
    request_id = queue.submit(new_request()).request_id
    states = []
    for attempt in range(1, settings.max_attempts + 1):
        lease = queue.claim(owner="w")
        assert lease is not None and lease.requests[0].attempts == attempt
        states.append(queue.fail(lease, request_id, error=f"boom {attempt}"))
        queue.release(lease)
        if attempt < settings.max_attempts:
            assert queue.claim(owner="w") is None  # backing off
            clock.advance(settings.retry_backoff_seconds * 2 ** (attempt - 1))
    assert states == ["queued", "queued", "dead"]
    record = queue.get(request_id)
    assert record.state == "dead" and record.error == "boom 3" and record.finished_at
    assert queue.claim(owner="w") is None


def test_expired_leases_count_as_attempts_and_end_dead(
    queue: RequestQueue, clock: FakeClock, settings: ServiceSettings
) -> None:
    request_id = queue.submit(new_request()).request_id
    for _ in range(settings.max_attempts):
        assert queue.claim(owner="crashy") is not None
        clock.advance(settings.lease_seconds + 1)  # the worker dies every time
    assert queue.claim(owner="w") is None
    record = queue.get(request_id)
    assert record.state == "dead" and "lease expired" in (record.error or "")


def test_deny_is_final(queue: RequestQueue) -> None:
    request_id = queue.submit(new_request()).request_id
    lease = queue.claim(owner="w")
    assert lease is not None
    assert queue.deny(lease, request_id, error="unknown ids")
    queue.release(lease)
    assert queue.get(request_id).state == "denied"
    assert queue.claim(owner="w") is None


def test_progress_and_release(queue: RequestQueue, engine: sa.Engine) -> None:
    request_id = queue.submit(new_request()).request_id
    lease = queue.claim(owner="w")
    assert lease is not None
    assert queue.set_progress(lease, {"stage": "retraining", "done": 1})
    assert queue.get(request_id).progress == {"stage": "retraining", "done": 1}
    queue.release(lease)
    with engine.connect() as conn:
        owner = conn.execute(sa.select(MODEL_LEASES.c.owner)).scalar()
    assert owner is None


def test_oldest_unfinished_and_recent(queue: RequestQueue, clock: FakeClock) -> None:
    assert queue.oldest_unfinished() is None
    first = queue.submit(new_request("m", "a")).request_id
    clock.advance(1)
    second = queue.submit(new_request("m", "b")).request_id
    oldest = queue.oldest_unfinished()
    assert oldest is not None and oldest.id == first
    assert [r.id for r in queue.recent()] == [second, first]
    assert queue.recent(state="completed") == []


def test_concurrent_workers_complete_each_request_exactly_once(
    engine: sa.Engine, settings: ServiceSettings
) -> None:
    """Four workers race over 60 requests on 6 models; each completes exactly once."""
    queue = RequestQueue(engine, settings=settings.replace(max_batch=3))
    ids = {queue.submit(new_request(f"m{i % 6}", f"s{i}")).request_id for i in range(60)}
    wins: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        try:
            while True:
                lease = queue.claim(owner=owner)
                if lease is None:
                    if queue.counts()["queued"] == 0:
                        return
                    continue
                for request in lease.requests:
                    if queue.complete(lease, request.id, result={"by": owner}):
                        with lock:
                            wins.append(request.id)
                queue.release(lease)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(wins) == sorted(ids)  # every request once, none twice
    with engine.connect() as conn:
        attempts = conn.execute(sa.select(sa.func.max(REQUESTS.c.attempts))).scalar()
    assert attempts == 1
