"""The worker: claims batches of deletion requests and makes the workspace forget them.

One claim is one model's lease (see :mod:`obliviate.service.queue`). For its batch the worker

1. checks each request against the registry: a request naming ids or subjects that were
   never registered is *denied* (it can never succeed; retrying would not help);
2. finishes a retrain that a crashed worker left half done (see below);
3. forgets the union of every valid **exact** request in **one** call, so the requests that
   arrived within the batching window share one rollback and one retrain of each affected
   shard (coalescing: a shard hit by several requests is retrained once);
4. runs each **approximate** request on its own (each names its method);
5. completes each request with its own result, fenced by the lease token, and in the same
   transaction enqueues its *follow-ups* (see below).

**Follow-ups: other models of the dataset.** Deletion is recorded per dataset, so once a
request's samples are deleted, every other model trained on that dataset whose active
version still holds some of them must forget them too. For each such model the completion
enqueues one exact follow-up request naming those samples (a subject's samples by id), with
the parent's reason and deadline and the parent's id in ``parent_id``; the parent's result
lists them under ``follow_ups``. Every exact strategy drops deleted samples still in its
lineage, so the follow-up retrains that model although the registry marked the samples
deleted already. Follow-ups are enqueued only with a completion that commits (fenced) and
carry the key ``<parent id>:follow:<model>``, so a redelivered request never enqueues a
second one; a follow-up enqueues none of its own (its parent covered every model).

**Receipts of a coalesced batch.** The batch's forget is issued with the id of its first
request (the *lead*), so the ledger writes one receipt, ``receipts/<lead id>.json``, covering
the union. Every request of the batch records ``receipt_request_id`` (the lead's id) and a
copy of that receipt; a batch of one request (the common case) has a receipt under its own
id. A receipt commits to the deleted samples without naming them, so sharing it reveals no
other requester's ids.

**Redelivery is safe.** If a worker dies after the registry marked the samples deleted, the
next attempt finds them already deleted, and the forget is a no-op. A worker killed
mid-retrain leaves the exact rolled-back version active (it serves no deleted sample, but
some shards lag behind); the next batch on that model first retrains those shards to the end
of their schedule (the strategy's ``resume()``), then forgets, so the final version is the
same as an uninterrupted run, also when the batch brings new requests. The redelivered
request's result then describes that resumed retrain (its shards, samples and time, under
``resumed``), not a no-op.

**Timings are recorded in the rows.** Each result carries ``rollback_seconds``,
``retrain_seconds`` and ``shards_retrained``; the API process's ``/metrics`` aggregates them
from the table (see :mod:`obliviate.service.stats`), because the worker is another process.
The worker also prunes expired idempotency keys every ``prune_interval_seconds`` and, when
``gold_audit_seconds`` is set, runs the periodic gold-standard audit of every served model
(it trains the reference in this process, so a worker is busy while it does).

Heartbeats run on a separate thread while the forget runs; if the lease is lost anyway (a
stall longer than the lease), the completion writes are refused by the fence and the other
worker's outcome stands.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obliviate.errors import ObliviateError, UnknownNameError
from obliviate.service._util import new_id
from obliviate.service.follow_ups import follow_ups_for
from obliviate.service.queue import Lease, NewRequest, RequestQueue, RequestRecord
from obliviate.strategies.base import ForgetResult, ModelFactory, ProgressEvent, Strategy
from obliviate.workspace import Workspace

__all__ = [
    "BatchOutcome",
    "ResumedRetrain",
    "Worker",
    "default_owner",
    "finish_interrupted_retrain",
]

_log = logging.getLogger(__name__)


def default_owner() -> str:
    """A worker id unique across machines and processes: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"


@dataclass(frozen=True)
class BatchOutcome:
    """What one claimed batch came to, by request id.

    Attributes:
        model: the model the batch was for.
        batch_id: the claim's id.
        completed: requests completed.
        denied: requests denied (with the reason).
        failed: requests whose attempt failed (now ``queued`` for a retry, or ``dead``).
        fenced: requests whose outcome the fence refused (the lease was lost).
        forgets: how many forget calls the batch took (1 for any number of exact requests).
    """

    model: str
    batch_id: str
    completed: tuple[str, ...] = ()
    denied: Mapping[str, str] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)
    fenced: tuple[str, ...] = ()
    forgets: int = 0


class _Heartbeat:
    """Extends a lease every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, queue: RequestQueue, lease: Lease, interval: float) -> None:
        self.queue = queue
        self.lease = lease
        self.lost = False
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="obliviate-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                renewed = self.queue.heartbeat(self.lease)
            except Exception:  # a transient database error: try again next beat
                _log.exception("heartbeat failed for model %s", self.lease.model)
                continue
            if renewed is None:
                self.lost = True
                _log.warning("lost the lease on model %s", self.lease.model)
                return
            self.lease = renewed


class Worker:
    """Processes the queue of one workspace.

    Args:
        workspace: the open workspace to forget from.
        queue: its request queue.
        owner: this worker's id (default: host, pid and a random suffix).
        model_factories: ``model name -> factory`` for models trained with a Python factory.
    """

    def __init__(
        self,
        workspace: Workspace,
        queue: RequestQueue,
        *,
        owner: str | None = None,
        model_factories: Mapping[str, ModelFactory] | None = None,
    ) -> None:
        self.workspace = workspace
        self.queue = queue
        self.owner = owner or default_owner()
        self.model_factories = dict(model_factories or {})
        self.on_batch: Callable[[BatchOutcome], None] | None = None
        self._next_prune = 0.0
        self._next_audit = 0.0

    # ----------------------------------------------------------------------------- loop
    def run(self, *, stop: threading.Event | None = None, max_batches: int | None = None) -> int:
        """Claims and processes batches until ``stop`` is set (or ``max_batches`` are done).

        Returns:
            The number of batches processed.
        """
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set() and (max_batches is None or done < max_batches):
            self.maybe_prune()
            self.maybe_audit()
            if self.run_once() is None:
                stop.wait(self.queue.settings.poll_seconds)
            else:
                done += 1
        return done

    def maybe_prune(self) -> int:
        """Deletes expired idempotency keys, at most once per ``prune_interval_seconds``.

        Keys are kept ``idempotency_retention_days``; past that a retried POST with an old
        key is a new request, and the row is only dead weight. Pruning is housekeeping, so a
        failure is logged and retried at the next interval, never raised.

        Returns:
            How many keys were deleted (0 when not due).
        """
        now = time.monotonic()
        if now < self._next_prune:
            return 0
        self._next_prune = now + self.queue.settings.prune_interval_seconds
        try:
            return self.queue.prune_idempotency()
        except Exception:  # noqa: BLE001 - housekeeping must not stop the worker
            _log.exception("could not prune expired idempotency keys")
            return 0

    def maybe_audit(self) -> list[Any]:
        """Runs the gold-standard audit for each served model that is due.

        Due means: ``gold_audit_seconds`` passed since this worker last looked, and, per
        model, deletions arrived since its last recorded audit. A breach is logged and
        recorded (``/metrics`` exports it; the shipped alert fires on it); an audit that
        cannot run is logged and retried at the next interval, never raised.

        Returns:
            The audit outcomes of this call (empty when not due or turned off).
        """
        settings = self.queue.settings
        if settings.gold_audit_seconds is None or settings.gold_audit_test is None:
            return []
        now = time.monotonic()
        if now < self._next_audit:
            return []
        self._next_audit = now + settings.gold_audit_seconds
        from obliviate.evaluation import (
            GOLD_PREFIX,
            audit_due,
            run_gold_standard_audit,
            workspace_data,
        )

        outcomes: list[Any] = []
        try:
            test = workspace_data(workspace=self.workspace, dataset=settings.gold_audit_test)
            for record in self.workspace.provenance.models():
                if record.name.startswith(GOLD_PREFIX) or not audit_due(
                    workspace=self.workspace,
                    model=record.name,
                    every_seconds=settings.gold_audit_seconds,
                ):
                    continue
                outcome = run_gold_standard_audit(
                    workspace=self.workspace,
                    model=record.name,
                    test=test,
                    model_factory=self.model_factories.get(record.name),
                )
                outcomes.append(outcome)
                if not outcome.ok:
                    _log.warning(
                        "gold-standard audit of %s breached: %s",
                        record.name,
                        ", ".join(f"{c.metric} gap {c.gap:.2f}" for c in outcome.breaches),
                    )
        except Exception:  # noqa: BLE001 - an audit must not stop deletions
            _log.exception("the periodic gold-standard audit failed")
        return outcomes

    def drain(self, *, timeout: float = 60.0) -> list[BatchOutcome]:
        """Processes batches until nothing is queued or running (tests and ``--drain``).

        Raises:
            TimeoutError: work remains after ``timeout`` seconds.
        """
        outcomes: list[BatchOutcome] = []
        end = time.monotonic() + timeout
        while True:
            outcome = self.run_once()
            if outcome is not None:
                outcomes.append(outcome)
                continue
            counts = self.queue.counts()
            if counts["queued"] == 0 and counts["running"] == 0:
                return outcomes
            if time.monotonic() > end:
                raise TimeoutError(f"work remains after {timeout} s: {counts}")
            time.sleep(self.queue.settings.poll_seconds)

    def run_once(self) -> BatchOutcome | None:
        """Claims one batch and processes it; ``None`` when nothing was due."""
        lease = self.queue.claim(owner=self.owner)
        if lease is None:
            return None
        try:
            outcome = self.process(lease)
        finally:
            self.queue.release(lease)
        if self.on_batch is not None:
            self.on_batch(outcome)
        return outcome

    # -------------------------------------------------------------------------- a batch
    def process(self, lease: Lease) -> BatchOutcome:
        """Forgets a claimed batch and records each request's outcome (fenced)."""
        acc = _Accumulator(lease)
        with _Heartbeat(self.queue, lease, self.queue.settings.heartbeat_interval) as beat:
            try:
                strategy = self.workspace.model(
                    lease.model, model_factory=self.model_factories.get(lease.model)
                )
            except ObliviateError as exc:
                for request in lease.requests:
                    acc.deny(self.queue, beat.lease, request, f"model unavailable: {exc}")
                return acc.outcome()
            valid = [r for r in lease.requests if self._admissible(strategy, r, beat, acc)]
            exact = [r for r in valid if r.mode == "exact"]
            if exact:
                self._forget(strategy, exact, beat, acc)
            for request in (r for r in valid if r.mode == "approximate"):
                self._forget(strategy, [request], beat, acc)
        return acc.outcome()

    def _admissible(
        self, strategy: Strategy, request: RequestRecord, beat: _Heartbeat, acc: _Accumulator
    ) -> bool:
        """Denies a request the registry can never honour (unknown ids or subjects)."""
        try:
            resolution = self.workspace.provenance.resolve(
                dataset=strategy.context.dataset,
                sample_ids=list(request.sample_ids),
                subject_ids=list(request.subject_ids),
            )
        except UnknownNameError as exc:
            acc.deny(self.queue, beat.lease, request, str(exc))
            return False
        if resolution.unknown_ids:
            unknown = list(resolution.unknown_ids)
            acc.deny(
                self.queue,
                beat.lease,
                request,
                f"{len(unknown)} id(s) are not registered in dataset "
                f"{strategy.context.dataset!r} (first: {unknown[:3]}); nothing was deleted.",
            )
            return False
        return True

    def _forget(
        self,
        strategy: Strategy,
        requests: Sequence[RequestRecord],
        beat: _Heartbeat,
        acc: _Accumulator,
    ) -> None:
        lead = requests[0]
        samples = sorted({s for r in requests for s in r.sample_ids})
        subjects = sorted({s for r in requests for s in r.subject_ids})
        reason = ",".join(sorted({r.reason for r in requests}))
        progress = _Progress(self.queue, beat)
        strategy.progress = progress
        acc.forgets += 1
        try:
            self.queue.set_progress(beat.lease, {"stage": "rolling_back", "components": {}})
            # A crashed forget's retrain is finished first: a forget on top of its rolled-back
            # version would retrain only the shards this batch hits and leave the rest lagging.
            resumed = finish_interrupted_retrain(strategy) if lead.mode == "exact" else None
            result = strategy.forget(
                sample_ids=samples,
                subject_ids=subjects,
                reason=reason,
                request_id=lead.id,
                method=lead.method if lead.mode == "approximate" else None,
            )
            follow_ups = follow_ups_for(self.workspace, strategy, requests)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the request
            _log.exception("forget failed for batch %s on %s", beat.lease.batch_id, lead.model)
            message = f"{type(exc).__name__}: {exc}"
            for request in requests:
                acc.fail(self.queue, beat.lease, request, message)
            return
        finally:
            strategy.progress = None
        final = progress.snapshot(result, resumed)
        for request in requests:
            body = _result_body(result, request, lead=lead, batch=requests, resumed=resumed)
            acc.complete(
                self.queue, beat.lease, request, body, final, follow_ups.get(request.id, ())
            )


@dataclass(frozen=True)
class ResumedRetrain:
    """A retrain a crashed worker left half done, finished by this worker.

    Attributes:
        version: the retrained version now active.
        from_version: the rolled-back version that was active (the crash point).
        components: the components retrained now (their checkpoint changed).
        samples_retrained: distinct samples the retraining trained on (``None`` if unknown).
        sample_passes: samples x epochs of retraining (``None`` if unknown).
        seconds: wall time of the resumed retrain.
    """

    version: int
    from_version: int
    components: tuple[str, ...]
    samples_retrained: int | None
    sample_passes: int | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the request's result under ``resumed``)."""
        return {
            "version": self.version,
            "from_version": self.from_version,
            "components": list(self.components),
            "samples_retrained": self.samples_retrained,
            "sample_passes": self.sample_passes,
            "seconds": self.seconds,
        }


def finish_interrupted_retrain(strategy: Strategy) -> ResumedRetrain | None:
    """Retrains the shards a crashed forget left behind; what was done, if anything.

    A forget activates the exact rolled-back version first and retrains afterwards; a worker
    killed in between leaves the rolled-back version active. It serves no deleted sample,
    but its shards stop short of their schedule, and a redelivered request is a no-op (its
    samples are already deleted). The strategy's public ``resume()`` (SISA and the
    strategies built on it) brings every lagging shard up to date, as the interrupted run
    would have; a strategy without one has nothing to resume here.
    """
    resume = getattr(strategy, "resume", None)
    if not callable(resume):
        return None
    prov = strategy.context.provenance
    active = prov.active_version(strategy.context.name)
    if active is None or active.kind != "rolled_back":
        return None
    start = time.perf_counter()
    resumed = resume()  # takes the model's lock and checks again under it
    if resumed is None:
        return None
    number = int(resumed.version)
    final = prov.version(model=strategy.context.name, number=number)
    changed = tuple(
        sorted(
            name
            for name, checkpoint in final.components.items()
            if checkpoint != active.components.get(name)
        )
    )
    _log.warning("finished an interrupted retrain of %s: version %d", active.model, number)
    return ResumedRetrain(
        version=number,
        from_version=active.number,
        components=changed,
        samples_retrained=int(resumed.samples_retrained),
        sample_passes=int(resumed.sample_passes),
        seconds=time.perf_counter() - start,
    )


class _Progress:
    """Relays a strategy's progress events to the requests' ``progress`` column."""

    def __init__(self, queue: RequestQueue, beat: _Heartbeat) -> None:
        self.queue = queue
        self.beat = beat
        self.components: dict[str, str] = {}
        self.done = 0
        self.total = 0

    def __call__(self, event: ProgressEvent) -> None:
        if event.detail:
            self.components[event.detail] = event.task
        self.done, self.total = event.done, event.total
        try:
            self.queue.set_progress(
                self.beat.lease,
                {
                    "stage": "retraining",
                    "done": self.done,
                    "total": self.total,
                    "components": dict(self.components),
                },
            )
        except Exception:  # progress is advisory; never fail a forget over it
            _log.exception("could not record progress")

    def snapshot(self, result: ForgetResult, resumed: ResumedRetrain | None) -> dict[str, Any]:
        components = {name: "retrained" for name in result.affected_components}
        if result.method is not None:
            components = {name: f"approximate:{result.method}" for name in components}
        components.update(self.components)
        if resumed is not None:
            components.update({name: "retrained" for name in resumed.components})
        return {
            "stage": "done",
            "done": len(components),
            "total": len(components),
            "components": components,
            "resumed_version": None if resumed is None else resumed.version,
        }


def _result_body(
    result: ForgetResult,
    request: RequestRecord,
    *,
    lead: RequestRecord,
    batch: Sequence[RequestRecord],
    resumed: ResumedRetrain | None,
) -> dict[str, Any]:
    """One request's share of a batch result (counts, never other requesters' ids).

    When the batch finished a crashed worker's retrain, the result describes that retrain:
    its shards join ``affected_components``, its work is counted, and ``resumed`` says so.
    """
    own = set(request.sample_ids)
    forgotten = set(result.forgotten_sample_ids)
    already = set(result.already_deleted_ids)
    affected = set(result.affected_components)
    samples, passes = result.samples_retrained, result.sample_passes
    retrain = max(result.seconds - result.rollback_seconds, 0.0)
    if resumed is not None:
        affected |= set(resumed.components)
        samples += resumed.samples_retrained or 0
        passes += resumed.sample_passes or 0
        retrain += resumed.seconds
    retrained = (
        result.method is None and bool(affected) and (resumed is not None or not result.noop)
    )
    return {
        "guarantee": result.guarantee.value,
        "method": result.method,
        "noop": result.noop and resumed is None,
        "deletion_id": result.deletion_id,
        "version_before": result.version_before,
        "rolled_back_version": (
            result.rolled_back_version
            if resumed is None or result.rolled_back_version is not None
            else resumed.from_version
        ),
        "version": result.version,  # the resumed one when the forget itself was a no-op
        "affected_components": sorted(affected),
        "earliest_slices": dict(result.earliest_slices),
        "samples_retrained": samples,
        "sample_passes": passes,
        "resumed": None if resumed is None else resumed.to_dict(),
        "rollback_seconds": result.rollback_seconds,
        "retrain_seconds": retrain if retrained else None,
        "shards_retrained": len(affected) if retrained else 0,
        "forgotten_requested_ids": len(own & forgotten),
        "already_deleted_requested_ids": len(own & already),
        "batch_forgotten": len(forgotten),
        "batch_id": None if request.batch_id is None else request.batch_id,
        "batch_size": len(batch),
        "receipt_request_id": lead.id,
        "receipt": None if result.receipt is None else dict(result.receipt),
        "seconds": result.seconds + (0.0 if resumed is None else resumed.seconds),
        "follow_ups": [],  # the queue records the enqueued ones with the completion
    }


class _Accumulator:
    """Collects one batch's outcomes while recording them through the fence."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.completed: list[str] = []
        self.denied: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.fenced: list[str] = []
        self.forgets = 0

    def complete(
        self,
        queue: RequestQueue,
        lease: Lease,
        request: RequestRecord,
        result: Mapping[str, Any],
        progress: Mapping[str, Any],
        follow_ups: Sequence[NewRequest] = (),
    ) -> None:
        if queue.complete(
            lease, request.id, result=result, progress=progress, follow_ups=follow_ups
        ):
            self.completed.append(request.id)
        else:
            self.fenced.append(request.id)

    def deny(self, queue: RequestQueue, lease: Lease, request: RequestRecord, error: str) -> None:
        if queue.deny(lease, request.id, error=error):
            self.denied[request.id] = error
        else:
            self.fenced.append(request.id)

    def fail(self, queue: RequestQueue, lease: Lease, request: RequestRecord, error: str) -> None:
        state = queue.fail(lease, request.id, error=error)
        if state is None:
            self.fenced.append(request.id)
        else:
            self.failed[request.id] = state

    def outcome(self) -> BatchOutcome:
        return BatchOutcome(
            model=self.lease.model,
            batch_id=self.lease.batch_id,
            completed=tuple(self.completed),
            denied=dict(self.denied),
            failed=dict(self.failed),
            fenced=tuple(self.fenced),
            forgets=self.forgets,
        )
