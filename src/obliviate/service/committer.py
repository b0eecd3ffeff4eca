"""Group commit: many concurrent POSTs made durable by one transaction.

A durable commit costs an fsync (SQLite ``synchronous=FULL``) or a WAL flush (PostgreSQL),
which bounds one-commit-per-request throughput. The committer is a single thread that takes
every submission waiting in its inbox, inserts them in one transaction, and only then
resolves each submitter's future, so every 202 still follows its own row's durable commit.

Batching is natural: while one transaction commits, new submissions queue up and go into the
next one, so a lone request pays no extra latency and a burst shares fsyncs. With
``max_wait_ms > 0`` the committer additionally waits that long for stragglers before
committing a batch smaller than ``max_batch``.
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
import time
from concurrent.futures import Future

from obliviate.service.errors import IdempotencyConflictError, ServiceError
from obliviate.service.queue import NewRequest, RequestQueue, Submitted

__all__ = ["GroupCommitter", "Outcome"]

_log = logging.getLogger(__name__)
Outcome = Submitted | IdempotencyConflictError
_Item = tuple[NewRequest, Future[Outcome]]


class GroupCommitter:
    """Commits submissions from many threads in shared transactions.

    Args:
        queue: the request queue to insert into.
        max_wait_ms: extra wait for more submissions before committing a partial batch.
        max_batch: the most submissions per transaction.
    """

    def __init__(self, queue: RequestQueue, *, max_wait_ms: float, max_batch: int) -> None:
        self.queue = queue
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch = max_batch
        self.commits = 0
        self.committed = 0
        self._inbox: stdlib_queue.SimpleQueue[_Item | None] = stdlib_queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, request: NewRequest) -> Future[Outcome]:
        """Queues ``request``; the future resolves once its transaction committed.

        Raises:
            ServiceError: the committer was closed.
        """
        if self._closed:
            raise ServiceError("the service is shutting down; retry the request.")
        self._ensure_started()
        future: Future[Outcome] = Future()
        self._inbox.put((request, future))
        return future

    def close(self) -> None:
        """Commits what is queued, then stops the thread."""
        self._closed = True
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join()
            self._thread = None

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="obliviate-commit", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._inbox.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    remaining = deadline - time.monotonic()
                    item = (
                        self._inbox.get(timeout=remaining)
                        if remaining > 0
                        else self._inbox.get_nowait()
                    )
                except stdlib_queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        try:
            outcomes = self.queue.submit_many([request for request, _ in batch])
        except Exception as exc:  # every waiting request learns it was not accepted
            _log.exception("group commit of %d request(s) failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        self.commits += 1
        self.committed += len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)
