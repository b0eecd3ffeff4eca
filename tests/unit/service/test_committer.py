"""Group commit: concurrent submissions share transactions, and each is durable when answered."""

from __future__ import annotations

import threading

import pytest

from obliviate.service.committer import GroupCommitter
from obliviate.service.errors import IdempotencyConflictError, ServiceError
from obliviate.service.queue import RequestQueue, Submitted
from tests.unit.service.conftest import new_request


def test_concurrent_submissions_share_commits(queue: RequestQueue) -> None:
    committer = GroupCommitter(queue, max_wait_ms=20.0, max_batch=64)
    results: list[Submitted | IdempotencyConflictError] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def submit(i: int) -> None:
        start.wait()
        outcome = committer.submit(new_request("m", f"s{i}")).result(timeout=30)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    committer.close()
    assert len(results) == 16 and all(isinstance(r, Submitted) and r.created for r in results)
    ids = {r.request_id for r in results if isinstance(r, Submitted)}
    assert all(queue.get(i).state == "queued" for i in ids)  # durable when answered
    assert committer.committed == 16 and committer.commits < 16


def test_a_failed_transaction_fails_every_waiter(queue: RequestQueue) -> None:
    committer = GroupCommitter(queue, max_wait_ms=0.0, max_batch=8)

    def broken(requests: object) -> object:
        raise OSError("database is gone")

    queue.submit_many = broken  # type: ignore[method-assign]
    future = committer.submit(new_request())
    with pytest.raises(OSError, match="gone"):
        future.result(timeout=10)
    committer.close()


def test_closed_committer_refuses(queue: RequestQueue) -> None:
    committer = GroupCommitter(queue, max_wait_ms=0.0, max_batch=8)
    assert isinstance(committer.submit(new_request()).result(timeout=10), Submitted)
    committer.close()
    with pytest.raises(ServiceError, match="shutting down"):
        committer.submit(new_request())
