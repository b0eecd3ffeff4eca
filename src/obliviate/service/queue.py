"""The durable deletion-request queue: the request table itself, leased and fenced.

A deletion request is compliance evidence, so its row is kept anyway; making that row the
queue means there is no broker to lose an acknowledged request (a transactional outbox).
The same SQLAlchemy Core code runs on both backends:

* **SQLite** (the default): every write transaction starts with ``BEGIN IMMEDIATE``, so a
  claim's read-check-write is serialised across processes; commits are durable
  (``journal_mode=WAL``, ``synchronous=FULL``, see :mod:`obliviate.provenance.engine`).
* **PostgreSQL**: the claim subquery ends in ``FOR UPDATE SKIP LOCKED``, and the per-model
  lease row is taken with a single conditional ``UPDATE`` (row-locked, re-checked under READ
  COMMITTED), so any number of workers on any number of machines can claim concurrently.

Life of a request::

    queued ──claim──▶ running ──complete──▶ completed
      ▲                  │ ├──deny────────▶ denied   (the registry refuses it: unknown ids)
      │   retry (backoff)│ └──fail / lease expiry, attempts == max ──▶ dead
      └──────────────────┘

**Leases are per model.** A claim first takes the model's lease row (owner, fencing token,
expiry), then every queued request for that model (up to ``max_batch``): one worker at a time
changes a model, and the requests that arrived within the batching window share one retrain
(coalescing). Heartbeats extend the model lease and the requests' leases together. When a
worker dies its lease expires; the next claim puts its requests back in the queue (or marks
them dead after ``max_attempts``) and claims them with a new token.

**Completion is fenced.** ``complete``/``deny``/``fail`` update a request only where it is
still ``running`` under the caller's owner *and* token; a worker whose lease expired and was
taken over gets ``False`` and must not report anything. The effect itself (a forget) is
idempotent in the registry: redelivered ids are already deleted and re-forgetting them is a
no-op, so redelivery never deletes or retrains twice (exactly once in effect).

**Acknowledged only after commit.** :meth:`RequestQueue.submit_many` inserts many requests
(and their idempotency keys) in one transaction, which is what the server's group committer
calls with every POST that arrived within a few milliseconds.

**Follow-ups are enqueued with the completion.** Deletion is recorded per dataset, so other
models of the dataset may still hold what a request deleted. :meth:`RequestQueue.complete`
takes the follow-up requests for them and inserts them in the transaction that completes the
parent, only if the fence lets the completion through: a completion that never commits
enqueues nothing, and the redelivered attempt enqueues them instead. Each follow-up carries
an idempotency key ``<parent id>:follow:<model>`` in a scope of its own, so a parent never
has two follow-ups for one model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from obliviate.errors import ConfigError
from obliviate.provenance.engine import SQLITE_BEGIN_OPTION
from obliviate.service._util import Clock, fingerprint, new_id, wall_clock
from obliviate.service.errors import IdempotencyConflictError, UnknownRequestError
from obliviate.service.settings import ServiceSettings
from obliviate.service.tables import IDEMPOTENCY, MODEL_LEASES, REQUEST_STATES, REQUESTS

__all__ = [
    "FOLLOW_UP_SCOPE",
    "Lease",
    "NewRequest",
    "RequestQueue",
    "RequestRecord",
    "Submitted",
]

_log = logging.getLogger(__name__)
_SUBMIT_ATTEMPTS = 3
_CANDIDATE_MODELS = 8
FINAL_STATES = ("completed", "denied", "dead")
#: The idempotency scope of follow-up requests. API key ids are 32 hex characters and
#: keyless submissions use "", so no client key can take a follow-up's idempotency key.
FOLLOW_UP_SCOPE = "follow-up"


@dataclass(frozen=True)
class NewRequest:
    """A validated deletion request, not yet stored.

    Attributes:
        model: the model to forget from.
        mode: ``"exact"`` or ``"approximate"``.
        method: the approximate method (``None`` for exact).
        sample_ids: samples to forget.
        subject_ids: data subjects whose samples are forgotten.
        reason: the legal ground (e.g. ``"gdpr-17-1-b"``).
        note: free text kept with the request (erasable registry, never the ledger).
        api_key_id: the key that submitted it (scopes its idempotency key).
        idempotency_key: the client's ``Idempotency-Key`` header, if sent.
        fingerprint: SHA-256 of the payload, to spot a key reused with another payload.
        parent_id: for a follow-up, the request whose completion enqueued it.
        deadline_at: the SLA deadline (epoch seconds); ``None`` means ``sla_seconds`` from
            acceptance. A follow-up keeps its parent's: the data subject's clock started
            when the parent was accepted.
    """

    model: str
    mode: str
    sample_ids: tuple[str, ...]
    subject_ids: tuple[str, ...]
    reason: str
    fingerprint: str
    method: str | None = None
    note: str | None = None
    api_key_id: str | None = None
    idempotency_key: str | None = None
    parent_id: str | None = None
    deadline_at: float | None = None

    @classmethod
    def follow_up(
        cls, parent: RequestRecord, *, model: str, sample_ids: Sequence[str]
    ) -> NewRequest:
        """The exact request that makes ``model`` forget what ``parent`` deleted.

        It names the parent's samples that ``model`` still holds, by sample id (a subject's
        samples resolved to their ids), and is always exact: an approximate method needs
        the forgotten samples' features, which the parent's deletion purged, whereas every
        exact strategy drops deleted samples still in its lineage. Its idempotency key and
        fingerprint depend only on the parent and the model, so enqueueing it again replays.
        """
        return cls(
            model=model,
            mode="exact",
            sample_ids=tuple(sample_ids),
            subject_ids=(),
            reason=parent.reason,
            fingerprint=fingerprint({"parent": parent.id, "model": model}),
            api_key_id=parent.api_key_id,
            idempotency_key=f"{parent.id}:follow:{model}",
            parent_id=parent.id,
            deadline_at=parent.deadline_at,
        )


@dataclass(frozen=True)
class Submitted:
    """The committed outcome of one submission.

    Attributes:
        request_id: the stored request (new, or the one the idempotency key names).
        created: ``False`` when the response replays an earlier submission.
        state: the request's state now.
        created_at: when the request was first accepted (epoch seconds).
        deadline_at: its SLA deadline (epoch seconds).
    """

    request_id: str
    created: bool
    state: str
    created_at: float
    deadline_at: float


@dataclass(frozen=True)
class RequestRecord:
    """One row of the request table."""

    id: str
    model: str
    mode: str
    method: str | None
    sample_ids: tuple[str, ...]
    subject_ids: tuple[str, ...]
    reason: str
    note: str | None
    api_key_id: str | None
    state: str
    attempts: int
    lease_owner: str | None
    lease_token: int | None
    lease_until: float | None
    created_at: float
    available_at: float
    deadline_at: float
    started_at: float | None
    finished_at: float | None
    batch_id: str | None
    progress: Mapping[str, Any] | None
    result: Mapping[str, Any] | None
    error: str | None
    parent_id: str | None = None

    @property
    def final(self) -> bool:
        """Whether the request reached a state it never leaves."""
        return self.state in FINAL_STATES

    @property
    def follow_up_ids(self) -> tuple[str, ...]:
        """The ids of the follow-ups its completion enqueued (in model-name order), if any."""
        links = (self.result or {}).get("follow_ups") or ()
        return tuple(str(link["request_id"]) for link in links)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RequestRecord:
        data = dict(row)
        data["sample_ids"] = tuple(data["sample_ids"] or ())
        data["subject_ids"] = tuple(data["subject_ids"] or ())
        return cls(**data)


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one model and a batch of its requests.

    Attributes:
        owner: the worker's id.
        model: the leased model.
        token: the fencing token; every later write must present it.
        until: lease expiry (epoch seconds), extended by heartbeats.
        batch_id: the id shared by the claimed requests.
        requests: the claimed requests, oldest deadline first.
    """

    owner: str
    model: str
    token: int
    until: float
    batch_id: str
    requests: tuple[RequestRecord, ...] = field(default=())


def _scope(request: NewRequest) -> str:
    """The idempotency scope of a request: its API key's id, or the follow-up scope."""
    return FOLLOW_UP_SCOPE if request.parent_id is not None else request.api_key_id or ""


class RequestQueue:
    """Leases, fences and records deletion requests in the workspace database.

    Args:
        engine: the registry engine (its database holds the service tables).
        settings: batching window, lease length, attempts, SLA, retention.
        clock: seconds since the epoch; tests pass a fake to expire leases without sleeping.
    """

    def __init__(
        self, engine: sa.Engine, *, settings: ServiceSettings, clock: Clock = wall_clock
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._postgres = engine.dialect.name == "postgresql"

    # ---------------------------------------------------------------------------- submit
    def submit(self, request: NewRequest) -> Submitted:
        """Stores one request durably (see :meth:`submit_many`).

        Raises:
            IdempotencyConflictError: its idempotency key was used for another payload.
        """
        outcome = self.submit_many([request])[0]
        if isinstance(outcome, IdempotencyConflictError):
            raise outcome
        return outcome

    def submit_many(
        self, requests: Sequence[NewRequest]
    ) -> list[Submitted | IdempotencyConflictError]:
        """Stores requests in one durable transaction; returns one outcome per request.

        A request whose idempotency key (scoped by API key) was seen before is not stored
        again: its outcome replays the first submission, or is an
        :class:`IdempotencyConflictError` when the payload differs. Concurrent duplicates are
        resolved by the database's uniqueness check and retried, so they replay too.
        """
        for attempt in range(_SUBMIT_ATTEMPTS):
            try:
                with self._writer.begin() as conn:
                    return self._submit(conn, requests)
            except IntegrityError:
                # Another process inserted one of our keys first; re-read and replay it.
                if attempt == _SUBMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _submit(
        self, conn: sa.Connection, requests: Sequence[NewRequest]
    ) -> list[Submitted | IdempotencyConflictError]:
        now = self.clock()
        keyed = {(_scope(r), r.idempotency_key) for r in requests if r.idempotency_key}
        seen: dict[tuple[str, str], tuple[str, str, float, float, str]] = {}
        if keyed:
            rows = conn.execute(
                sa.select(
                    IDEMPOTENCY.c.scope,
                    IDEMPOTENCY.c.key,
                    IDEMPOTENCY.c.fingerprint,
                    IDEMPOTENCY.c.request_id,
                    IDEMPOTENCY.c.expires_at,
                    REQUESTS.c.created_at,
                    REQUESTS.c.deadline_at,
                    REQUESTS.c.state,
                )
                .join(REQUESTS, REQUESTS.c.id == IDEMPOTENCY.c.request_id)
                .where(sa.tuple_(IDEMPOTENCY.c.scope, IDEMPOTENCY.c.key).in_(sorted(keyed)))
            ).all()
            expired = []
            for row in rows:
                if row.expires_at < now:
                    expired.append((row.scope, row.key))
                    continue
                seen[(row.scope, row.key)] = (
                    row.fingerprint,
                    row.request_id,
                    row.created_at,
                    row.deadline_at,
                    row.state,
                )
            for scope, key in expired:
                conn.execute(
                    sa.delete(IDEMPOTENCY).where(
                        IDEMPOTENCY.c.scope == scope, IDEMPOTENCY.c.key == key
                    )
                )
        outcomes: list[Submitted | IdempotencyConflictError] = []
        new_rows: list[dict[str, Any]] = []
        new_keys: list[dict[str, Any]] = []
        expires = now + self.settings.idempotency_retention_seconds
        for request in requests:
            scope = _scope(request)
            if request.idempotency_key and (scope, request.idempotency_key) in seen:
                fp, request_id, created_at, deadline_at, state = seen[
                    (scope, request.idempotency_key)
                ]
                if fp != request.fingerprint:
                    outcomes.append(
                        IdempotencyConflictError(
                            f"Idempotency-Key {request.idempotency_key!r} was already used "
                            f"for request {request_id} with a different payload; use a new "
                            "key for a different request.",
                            request_id=request_id,
                        )
                    )
                else:
                    outcomes.append(Submitted(request_id, False, state, created_at, deadline_at))
                continue
            request_id = new_id()
            deadline = (
                now + self.settings.sla_seconds
                if request.deadline_at is None
                else request.deadline_at
            )
            new_rows.append(
                {
                    "id": request_id,
                    "model": request.model,
                    "mode": request.mode,
                    "method": request.method,
                    "sample_ids": list(request.sample_ids),
                    "subject_ids": list(request.subject_ids),
                    "reason": request.reason,
                    "note": request.note,
                    "api_key_id": request.api_key_id,
                    "state": "queued",
                    "attempts": 0,
                    "created_at": now,
                    "available_at": now,
                    "deadline_at": deadline,
                    "parent_id": request.parent_id,
                }
            )
            if request.idempotency_key:
                new_keys.append(
                    {
                        "scope": scope,
                        "key": request.idempotency_key,
                        "fingerprint": request.fingerprint,
                        "request_id": request_id,
                        "created_at": now,
                        "expires_at": expires,
                    }
                )
                seen[(scope, request.idempotency_key)] = (
                    request.fingerprint,
                    request_id,
                    now,
                    deadline,
                    "queued",
                )
            outcomes.append(Submitted(request_id, True, "queued", now, deadline))
        if new_rows:
            conn.execute(sa.insert(REQUESTS), new_rows)
        if new_keys:
            conn.execute(sa.insert(IDEMPOTENCY), new_keys)
        return outcomes

    def prune_idempotency(self, *, chunk: int = 10_000) -> int:
        """Deletes idempotency keys past their retention; returns how many.

        Deletes in chunks of ``chunk`` rows, one short transaction each, so a large backlog
        never holds the database's write lock for long (SQLite has one writer).
        """
        total = 0
        while True:
            with self._writer.begin() as conn:
                now = self.clock()
                doomed = (
                    sa.select(IDEMPOTENCY.c.scope, IDEMPOTENCY.c.key)
                    .where(IDEMPOTENCY.c.expires_at < now)
                    .limit(chunk)
                )
                keys = [tuple(row) for row in conn.execute(doomed)]
                if keys:
                    conn.execute(
                        sa.delete(IDEMPOTENCY).where(
                            sa.tuple_(IDEMPOTENCY.c.scope, IDEMPOTENCY.c.key).in_(keys)
                        )
                    )
            total += len(keys)
            if len(keys) < chunk:
                if total:
                    _log.info("pruned %d expired idempotency key(s)", total)
                return total

    # ------------------------------------------------------------------------------ read
    def get(self, request_id: str) -> RequestRecord:
        """The request with ``request_id``.

        Raises:
            UnknownRequestError: no such request.
        """
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(REQUESTS).where(REQUESTS.c.id == request_id))
                .mappings()
                .first()
            )
        if row is None:
            raise UnknownRequestError(f"no deletion request has id {request_id!r}.")
        return RequestRecord.from_row(row)

    def follow_ups(self, request_id: str) -> list[RequestRecord]:
        """The follow-up requests whose parent is ``request_id``, oldest first, then by model."""
        query = (
            sa.select(REQUESTS)
            .where(REQUESTS.c.parent_id == request_id)
            .order_by(REQUESTS.c.created_at, REQUESTS.c.model)
        )
        with self.engine.connect() as conn:
            return [RequestRecord.from_row(r) for r in conn.execute(query).mappings()]

    def recent(self, *, state: str | None = None, limit: int = 100) -> list[RequestRecord]:
        """Requests, newest first (optionally only those in ``state``)."""
        query = sa.select(REQUESTS).order_by(REQUESTS.c.created_at.desc()).limit(limit)
        if state is not None:
            query = query.where(REQUESTS.c.state == state)
        with self.engine.connect() as conn:
            return [RequestRecord.from_row(r) for r in conn.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        """How many requests are in each state (every state present, zeros included)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(REQUESTS.c.state, sa.func.count()).group_by(REQUESTS.c.state)
            ).all()
        found = {str(state): int(n) for state, n in rows}
        return {state: found.get(state, 0) for state in REQUEST_STATES}

    def oldest_unfinished(self) -> RequestRecord | None:
        """The oldest queued or running request (the dashboard's SLA watch), if any."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(REQUESTS)
                    .where(REQUESTS.c.state.in_(("queued", "running")))
                    .order_by(REQUESTS.c.created_at)
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return None if row is None else RequestRecord.from_row(row)

    # ----------------------------------------------------------------------------- claim
    def claim(self, *, owner: str) -> Lease | None:
        """Leases the most urgent model with due requests, and its queued requests.

        A model is due when its oldest claimable request has waited the batching window;
        models are tried earliest deadline first. Requests whose lease expired are first
        put back in the queue (or marked dead after ``max_attempts``).

        Returns:
            The lease, or ``None`` when nothing is due.
        """
        with self._writer.begin() as conn:
            now = self.clock()
            self._reap(conn, now)
            for model in self._due_models(conn, now):
                lease = self._claim_model(conn, owner=owner, model=model, now=now)
                if lease is not None:
                    return lease
        return None

    def _reap(self, conn: sa.Connection, now: float) -> None:
        """Returns requests whose lease expired to the queue (or to dead)."""
        expired = REQUESTS.c.state == "running", REQUESTS.c.lease_until < now
        ids = [r.id for r in conn.execute(sa.select(REQUESTS.c.id).where(*expired))]
        if not ids:
            return
        _log.warning("lease expired on %d request(s); redelivering", len(ids))
        exhausted = REQUESTS.c.attempts >= self.settings.max_attempts
        conn.execute(
            sa.update(REQUESTS)
            .where(REQUESTS.c.id.in_(ids), *expired)
            .values(
                state=sa.case((exhausted, "dead"), else_="queued"),
                finished_at=sa.case((exhausted, now), else_=None),
                error="the worker's lease expired before it finished (crash or stall)",
                lease_owner=None,
                lease_token=None,
                lease_until=None,
                available_at=now,
            )
        )

    def _due_models(self, conn: sa.Connection, now: float) -> list[str]:
        busy = sa.select(MODEL_LEASES.c.model).where(
            MODEL_LEASES.c.owner.is_not(None), MODEL_LEASES.c.lease_until >= now
        )
        query = (
            sa.select(REQUESTS.c.model)
            .where(
                REQUESTS.c.state == "queued",
                REQUESTS.c.available_at <= now,
                REQUESTS.c.model.not_in(busy),
            )
            .group_by(REQUESTS.c.model)
            .having(sa.func.min(REQUESTS.c.created_at) <= now - self.settings.batch_window_seconds)
            .order_by(sa.func.min(REQUESTS.c.deadline_at))
            .limit(_CANDIDATE_MODELS)
        )
        return [str(m) for m in conn.execute(query).scalars()]

    def _claim_model(
        self, conn: sa.Connection, *, owner: str, model: str, now: float
    ) -> Lease | None:
        until = now + self.settings.lease_seconds
        insert = (postgresql.insert if self._postgres else sqlite.insert)(MODEL_LEASES)
        conn.execute(
            insert.values(
                model=model, owner=None, token=0, lease_until=None
            ).on_conflict_do_nothing()
        )
        token = conn.execute(
            sa.update(MODEL_LEASES)
            .where(
                MODEL_LEASES.c.model == model,
                sa.or_(MODEL_LEASES.c.owner.is_(None), MODEL_LEASES.c.lease_until < now),
            )
            .values(owner=owner, token=MODEL_LEASES.c.token + 1, lease_until=until)
            .returning(MODEL_LEASES.c.token)
        ).scalar()
        if token is None:
            return None  # another worker holds this model
        batch_id = new_id()
        pick = (
            sa.select(REQUESTS.c.id)
            .where(
                REQUESTS.c.model == model,
                REQUESTS.c.state == "queued",
                REQUESTS.c.available_at <= now,
            )
            .order_by(REQUESTS.c.deadline_at, REQUESTS.c.created_at, REQUESTS.c.id)
            .limit(self.settings.max_batch)
            .with_for_update(skip_locked=True)
        )
        rows = (
            conn.execute(
                sa.update(REQUESTS)
                .where(REQUESTS.c.id.in_(pick.scalar_subquery()))
                .values(
                    state="running",
                    lease_owner=owner,
                    lease_token=token,
                    lease_until=until,
                    attempts=REQUESTS.c.attempts + 1,
                    started_at=sa.func.coalesce(REQUESTS.c.started_at, now),
                    batch_id=batch_id,
                    error=None,
                )
                .returning(*REQUESTS.c)
            )
            .mappings()
            .all()
        )
        if not rows:
            self._release(conn, owner=owner, model=model, token=int(token))
            return None
        records = sorted(
            (RequestRecord.from_row(r) for r in rows),
            key=lambda r: (r.deadline_at, r.created_at, r.id),
        )
        return Lease(owner, model, int(token), until, batch_id, tuple(records))

    # --------------------------------------------------------------------- while leased
    def _fence(self, lease: Lease, request_id: str | None = None) -> sa.ColumnElement[bool]:
        where = sa.and_(
            REQUESTS.c.state == "running",
            REQUESTS.c.lease_owner == lease.owner,
            REQUESTS.c.lease_token == lease.token,
            REQUESTS.c.model == lease.model,
        )
        if request_id is not None:
            where = sa.and_(where, REQUESTS.c.id == request_id)
        return where

    def heartbeat(self, lease: Lease) -> Lease | None:
        """Extends the lease; ``None`` if it was lost (expired and taken over)."""
        with self._writer.begin() as conn:
            now = self.clock()
            until = now + self.settings.lease_seconds
            kept = conn.execute(
                sa.update(MODEL_LEASES)
                .where(
                    MODEL_LEASES.c.model == lease.model,
                    MODEL_LEASES.c.owner == lease.owner,
                    MODEL_LEASES.c.token == lease.token,
                )
                .values(lease_until=until)
            ).rowcount
            if not kept:
                return None
            conn.execute(sa.update(REQUESTS).where(self._fence(lease)).values(lease_until=until))
        return Lease(lease.owner, lease.model, lease.token, until, lease.batch_id, lease.requests)

    def set_progress(self, lease: Lease, progress: Mapping[str, Any]) -> bool:
        """Records per-component progress on every request of the lease (fenced)."""
        with self._writer.begin() as conn:
            count = conn.execute(
                sa.update(REQUESTS).where(self._fence(lease)).values(progress=dict(progress))
            ).rowcount
        return count > 0

    def complete(
        self,
        lease: Lease,
        request_id: str,
        *,
        result: Mapping[str, Any],
        progress: Mapping[str, Any] | None = None,
        follow_ups: Sequence[NewRequest] = (),
    ) -> bool:
        """Marks a request completed with ``result``, only if the lease still owns it.

        Args:
            lease: the lease the request was claimed under (the fence).
            request_id: the request.
            result: its outcome (JSON).
            progress: its final per-component progress.
            follow_ups: requests for other models (see :meth:`NewRequest.follow_up`),
                inserted in the same transaction, only if the completion goes through.
                Their ids are recorded in the result under ``follow_ups`` (model and
                request id each); one whose idempotency key exists already is not inserted
                again, and the existing request is recorded.

        Returns:
            ``False`` when the lease was lost: another worker owns the request now.

        Raises:
            ConfigError: a follow-up does not name ``request_id`` as its parent.
        """
        strays = [f.model for f in follow_ups if f.parent_id != request_id or not f.idempotency_key]
        if strays:
            raise ConfigError(
                f"follow-ups of request {request_id} must name it as their parent and carry an "
                f"idempotency key (build them with NewRequest.follow_up); these do not: {strays}."
            )
        values: dict[str, Any] = {
            "state": "completed",
            "result": dict(result),
            "lease_owner": None,
            "lease_until": None,
        }
        if progress is not None:
            values["progress"] = dict(progress)
        return self._finish(lease, request_id, values, follow_ups)

    def deny(self, lease: Lease, request_id: str, *, error: str) -> bool:
        """Marks a request denied (it can never succeed, e.g. unknown ids); fenced."""
        values = {"state": "denied", "error": error, "lease_owner": None, "lease_until": None}
        return self._finish(lease, request_id, values)

    def _finish(
        self,
        lease: Lease,
        request_id: str,
        values: dict[str, Any],
        follow_ups: Sequence[NewRequest] = (),
    ) -> bool:
        with self._writer.begin() as conn:
            values["finished_at"] = self.clock()
            count = conn.execute(
                sa.update(REQUESTS).where(self._fence(lease, request_id)).values(**values)
            ).rowcount
            if count == 1 and follow_ups:
                # The fenced update holds the row (PostgreSQL row lock; SQLite's write lock),
                # so no other completion of this request can insert them concurrently.
                links = self._enqueue_follow_ups(conn, follow_ups)
                conn.execute(
                    sa.update(REQUESTS)
                    .where(REQUESTS.c.id == request_id)
                    .values(result={**values["result"], "follow_ups": links})
                )
        if count != 1:
            _log.warning("lost the lease on request %s; its outcome was not recorded", request_id)
        return bool(count == 1)

    def _enqueue_follow_ups(
        self, conn: sa.Connection, follow_ups: Sequence[NewRequest]
    ) -> list[dict[str, str]]:
        links = []
        for request, outcome in zip(follow_ups, self._submit(conn, follow_ups), strict=True):
            # A conflict means the key exists with another payload: that follow-up stands.
            links.append({"model": request.model, "request_id": outcome.request_id})
            if isinstance(outcome, Submitted) and outcome.created:
                _log.info(
                    "enqueued follow-up %s for model %s (parent %s)",
                    outcome.request_id,
                    request.model,
                    request.parent_id,
                )
        return links

    def fail(self, lease: Lease, request_id: str, *, error: str) -> str | None:
        """Records a failed attempt: back to the queue with backoff, or dead when exhausted.

        Returns:
            The new state (``"queued"`` or ``"dead"``), or ``None`` if the lease was lost.
        """
        with self._writer.begin() as conn:
            now = self.clock()
            attempts = conn.execute(
                sa.select(REQUESTS.c.attempts).where(self._fence(lease, request_id))
            ).scalar()
            if attempts is None:
                return None
            dead = attempts >= self.settings.max_attempts
            delay = self.settings.retry_backoff_seconds * 2 ** max(attempts - 1, 0)
            conn.execute(
                sa.update(REQUESTS)
                .where(self._fence(lease, request_id))
                .values(
                    state="dead" if dead else "queued",
                    error=error,
                    lease_owner=None,
                    lease_token=None,
                    lease_until=None,
                    available_at=now if dead else now + delay,
                    finished_at=now if dead else None,
                )
            )
        return "dead" if dead else "queued"

    def release(self, lease: Lease) -> None:
        """Gives the model lease back (requests still running under it are unaffected)."""
        with self._writer.begin() as conn:
            self._release(conn, owner=lease.owner, model=lease.model, token=lease.token)

    @staticmethod
    def _release(conn: sa.Connection, *, owner: str, model: str, token: int) -> None:
        conn.execute(
            sa.update(MODEL_LEASES)
            .where(
                MODEL_LEASES.c.model == model,
                MODEL_LEASES.c.owner == owner,
                MODEL_LEASES.c.token == token,
            )
            .values(owner=None, lease_until=None)
        )
