"""Read-only aggregates of the request table: the numbers behind ``/metrics`` and the dashboard.

The worker runs in other processes (often on other machines) than the API server, so
nothing the worker measures can live in the server's memory. Instead the worker records its
timings *in the request rows* (``started_at``/``finished_at`` and, in the result,
``retrain_seconds`` and ``shards_retrained``), and every number here is an aggregate query
over that table, evaluated when asked. Any API process therefore reports the whole
deployment, a restart loses nothing, and the histograms stay cumulative (finished rows never
change).

A coalesced batch stores its retrain timing in every request's result; retrain aggregates
count only the batch's *lead* row (``result.receipt_request_id == id``), so one retrain is
one observation whatever the batch size.

Each aggregate is one scan of the finished rows; that is milliseconds for tens of thousands
of rows and about a second per million on SQLite, fine for a scrape every 15-60 s (the
metrics collector also caches it for a few seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from obliviate.service._util import Clock, wall_clock
from obliviate.service.tables import MODEL_LEASES, REQUEST_STATES, REQUESTS

__all__ = [
    "COMPLETION_BUCKETS",
    "RETRAIN_BUCKETS",
    "SLA_FRACTION_BUCKETS",
    "Histogram",
    "History",
    "ModelHistory",
    "QueueStats",
    "QueueSummary",
    "RetrainRecord",
]

#: Request-to-finish seconds: from a second to past the 30-day GDPR deadline (and 90 days).
COMPLETION_BUCKETS = (
    1.0,
    5.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4 * 3600.0,
    86_400.0,
    3 * 86_400.0,
    7 * 86_400.0,
    14 * 86_400.0,
    30 * 86_400.0,
    90 * 86_400.0,
)
#: Retrain seconds (a batch's, or one shard's share).
RETRAIN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: Time to finish as a fraction of the request's SLA (1.0 = exactly at the deadline).
SLA_FRACTION_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.0)

_UNFINISHED = ("queued", "running")
_FINISHED = ("completed", "denied", "dead")


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram: ``counts[i]`` observations were ``<= bounds[i]``."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    total: float

    def buckets(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``, as Prometheus wants them."""
        pairs = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, self.counts, strict=True)]
        return [*pairs, ("+Inf", float(self.count))]


@dataclass(frozen=True)
class ModelHistory:
    """Finished-request aggregates of one model.

    Attributes:
        model: the model.
        finished: finished requests by final state (``completed``, ``denied``, ``dead``).
        retries: attempts beyond the first, summed over finished requests.
        sla_missed: finished requests that finished after their deadline.
        completion: seconds from acceptance to finish, by final state.
        sla_fraction: time to finish over the SLA (completed requests).
        retrain: wall seconds of each retrain (one per batch).
        shard_retrain: each retrained shard's share of its batch's retrain wall time.
    """

    model: str
    finished: Mapping[str, int]
    retries: int
    sla_missed: int
    completion: Mapping[str, Histogram]
    sla_fraction: Histogram
    retrain: Histogram
    shard_retrain: Histogram


@dataclass(frozen=True)
class History:
    """Finished-request aggregates of every model."""

    models: tuple[ModelHistory, ...] = field(default=())


@dataclass(frozen=True)
class QueueSummary:
    """The queue right now (the dashboard's header and the scrape-time gauges).

    Attributes:
        now: when it was computed (epoch seconds).
        counts: requests by state (every state, zeros included).
        by_model: ``model -> state -> count`` (states with requests only).
        oldest_unfinished_at: acceptance time of the oldest queued or running request.
        oldest_unfinished_deadline: that request's deadline.
        past_deadline: unfinished requests already past their deadline.
        max_sla_fraction: the largest share of its SLA any unfinished request has used.
        retrying: queued requests waiting after a failed attempt.
        leases_held: models a worker holds a live lease on (busy workers).
    """

    now: float
    counts: Mapping[str, int]
    by_model: Mapping[str, Mapping[str, int]]
    oldest_unfinished_at: float | None
    oldest_unfinished_deadline: float | None
    past_deadline: int
    max_sla_fraction: float
    retrying: int
    leases_held: int


@dataclass(frozen=True)
class RetrainRecord:
    """One finished retrain (a batch), for the dashboard's latency chart."""

    request_id: str
    model: str
    finished_at: float
    batch_size: int
    retrain_seconds: float
    shards_retrained: int
    completion_seconds: float


def _histogram(
    conn: sa.Connection,
    *,
    value: sa.ColumnElement[Any],
    where: Sequence[sa.ColumnElement[bool]],
    bounds: Sequence[float],
    weight: sa.ColumnElement[Any] | None = None,
    group: sa.ColumnElement[Any],
) -> dict[str, Histogram]:
    """One cumulative histogram of ``value`` per ``group`` value, in a single scan."""
    one: sa.ColumnElement[Any] = sa.literal(1) if weight is None else weight
    columns = [
        sa.func.sum(sa.case((value <= bound, one), else_=0)).label(f"b{i}")
        for i, bound in enumerate(bounds)
    ]
    rows = conn.execute(
        sa.select(
            group.label("g"),
            sa.func.sum(one).label("n"),
            sa.func.sum(value * one if weight is not None else value).label("s"),
            *columns,
        )
        .where(*where)
        .group_by(group)
    ).all()
    return {
        str(row.g): Histogram(
            bounds=tuple(bounds),
            counts=tuple(int(row[3 + i] or 0) for i in range(len(bounds))),
            count=int(row.n or 0),
            total=float(row.s or 0.0),
        )
        for row in rows
    }


def _empty(bounds: Sequence[float]) -> Histogram:
    return Histogram(tuple(bounds), tuple(0 for _ in bounds), 0, 0.0)


class QueueStats:
    """Aggregate queries over the request table (no writes).

    Args:
        engine: the workspace database engine.
        clock: seconds since the epoch (tests pass a fake).
    """

    def __init__(self, engine: sa.Engine, *, clock: Clock = wall_clock) -> None:
        self.engine = engine
        self.clock = clock

    def summary(self) -> QueueSummary:
        """The queue now: depth by state and model, SLA pressure, retries, busy leases."""
        now = self.clock()
        r = REQUESTS.c
        unfinished = r.state.in_(_UNFINISHED)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.model, r.state, sa.func.count()).group_by(r.model, r.state)
            ).all()
            pressure = conn.execute(
                sa.select(
                    sa.func.count().filter(r.deadline_at < now),
                    sa.func.max((now - r.created_at) / (r.deadline_at - r.created_at)),
                    sa.func.count().filter(r.state == "queued", r.attempts > 0),
                ).where(unfinished)
            ).one()
            oldest = conn.execute(
                sa.select(r.created_at, r.deadline_at)
                .where(unfinished)
                .order_by(r.created_at)
                .limit(1)
            ).first()
            leases = conn.execute(
                sa.select(sa.func.count()).where(
                    MODEL_LEASES.c.owner.is_not(None), MODEL_LEASES.c.lease_until >= now
                )
            ).scalar()
        counts = dict.fromkeys(REQUEST_STATES, 0)
        by_model: dict[str, dict[str, int]] = {}
        for model, state, n in rows:
            counts[str(state)] = counts.get(str(state), 0) + int(n)
            by_model.setdefault(str(model), {})[str(state)] = int(n)
        return QueueSummary(
            now=now,
            counts=counts,
            by_model=by_model,
            oldest_unfinished_at=None if oldest is None else float(oldest.created_at),
            oldest_unfinished_deadline=None if oldest is None else float(oldest.deadline_at),
            past_deadline=int(pressure[0] or 0),
            max_sla_fraction=max(float(pressure[1] or 0.0), 0.0),
            retrying=int(pressure[2] or 0),
            leases_held=int(leases or 0),
        )

    def history(self) -> History:
        """Cumulative aggregates of every finished request, per model."""
        r = REQUESTS.c
        finished = r.state.in_(_FINISHED)
        took = r.finished_at - r.created_at
        retrain = r.result["retrain_seconds"].as_float()
        shards = r.result["shards_retrained"].as_integer()
        lead = [
            r.state == "completed",
            r.result["receipt_request_id"].as_string() == r.id,
            retrain.is_not(None),
        ]
        with self.engine.connect() as conn:
            counts = conn.execute(
                sa.select(
                    r.model,
                    r.state,
                    sa.func.count(),
                    sa.func.sum(r.attempts - 1),
                    sa.func.count().filter(r.finished_at > r.deadline_at),
                )
                .where(finished)
                .group_by(r.model, r.state)
            ).all()
            completion: dict[tuple[str, str], Histogram] = {}
            for state in _FINISHED:
                per_model = _histogram(
                    conn,
                    value=took,
                    where=[r.state == state],
                    bounds=COMPLETION_BUCKETS,
                    group=r.model,
                )
                completion.update({(m, state): h for m, h in per_model.items()})
            fraction = _histogram(
                conn,
                value=took / (r.deadline_at - r.created_at),
                where=[r.state == "completed"],
                bounds=SLA_FRACTION_BUCKETS,
                group=r.model,
            )
            retrains = _histogram(
                conn, value=retrain, where=lead, bounds=RETRAIN_BUCKETS, group=r.model
            )
            per_shard = _histogram(
                conn,
                value=retrain / shards,
                where=[*lead, shards > 0],
                bounds=RETRAIN_BUCKETS,
                weight=shards,
                group=r.model,
            )
        finished_by: dict[str, dict[str, int]] = {}
        retries: dict[str, int] = {}
        missed: dict[str, int] = {}
        for model, state, n, extra, late in counts:
            finished_by.setdefault(str(model), {})[str(state)] = int(n)
            retries[str(model)] = retries.get(str(model), 0) + int(extra or 0)
            missed[str(model)] = missed.get(str(model), 0) + int(late or 0)
        models = []
        for model in sorted(finished_by):
            models.append(
                ModelHistory(
                    model=model,
                    finished={s: finished_by[model].get(s, 0) for s in _FINISHED},
                    retries=retries.get(model, 0),
                    sla_missed=missed.get(model, 0),
                    completion={
                        s: completion.get((model, s), _empty(COMPLETION_BUCKETS)) for s in _FINISHED
                    },
                    sla_fraction=fraction.get(model, _empty(SLA_FRACTION_BUCKETS)),
                    retrain=retrains.get(model, _empty(RETRAIN_BUCKETS)),
                    shard_retrain=per_shard.get(model, _empty(RETRAIN_BUCKETS)),
                )
            )
        return History(tuple(models))

    def recent_retrains(self, *, limit: int = 50) -> list[RetrainRecord]:
        """The latest finished retrains (one per batch), newest first."""
        r = REQUESTS.c
        query = (
            sa.select(r.id, r.model, r.created_at, r.finished_at, r.result)
            .where(
                r.state == "completed",
                r.result["receipt_request_id"].as_string() == r.id,
                r.result["retrain_seconds"].as_float().is_not(None),
            )
            .order_by(r.finished_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            RetrainRecord(
                request_id=str(row.id),
                model=str(row.model),
                finished_at=float(row.finished_at),
                batch_size=int(row.result.get("batch_size") or 1),
                retrain_seconds=float(row.result.get("retrain_seconds") or 0.0),
                shards_retrained=int(row.result.get("shards_retrained") or 0),
                completion_seconds=float(row.finished_at - row.created_at),
            )
            for row in rows
        ]
