"""Prometheus collectors computed at scrape time from durable state, not from process memory.

The worker is another process (often another machine), so the API server's ``/metrics``
cannot count its work in memory. These collectors read what the worker wrote:

* :class:`TableCollector`: the request table, through :class:`~obliviate.service.stats.
  QueueStats` (queue depth, SLA pressure, retries, completion times, retrain latencies);
* :class:`GoldStandardCollector`: the latest gold-standard audit of each model, from the
  JSON records under ``<workspace>/audits/gold-standard/`` that
  :func:`obliviate.evaluation.audit.run_gold_standard_audit` writes.

A database that does not answer is reported as ``obliviate_database_up 0`` instead of failing
the scrape, so the alert on it can fire.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from obliviate.service.stats import History, QueueStats, QueueSummary

__all__ = ["GOLD_STANDARD_DIR", "GoldStandardCollector", "TableCollector"]

_log = logging.getLogger(__name__)
#: Where gold-standard audit records live, relative to the workspace root.
GOLD_STANDARD_DIR = Path("audits") / "gold-standard"


class TableCollector(Collector):
    """Queue gauges and finished-request histograms, aggregated from the request table.

    Args:
        stats: the aggregate queries.
        cache_seconds: reuse the last aggregates this long (one scan per burst of scrapes).
    """

    def __init__(self, stats: QueueStats, *, cache_seconds: float = 5.0) -> None:
        self.stats = stats
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, QueueSummary, History] | None = None

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query (or cache) the database."""
        return []

    def _read(self) -> tuple[QueueSummary, History]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_seconds:
                self._cached = (now, self.stats.summary(), self.stats.history())
            return self._cached[1], self._cached[2]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "obliviate_database_up", "1 when the workspace database answered this scrape."
        )
        try:
            summary, history = self._read()
        except Exception as exc:  # noqa: BLE001 - any database failure means down
            _log.warning("metrics could not read the request table: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from _queue_metrics(summary)
        yield from _history_metrics(history)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _queue_metrics(summary: QueueSummary) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "obliviate_queue_depth", "Deletion requests by state.", labels=["state"]
    )
    for state, count in summary.counts.items():
        depth.add_metric([state], count)
    yield depth
    per_model = GaugeMetricFamily(
        "obliviate_queue_model_depth",
        "Deletion requests by model and state (states with requests only).",
        labels=["model", "state"],
    )
    for model, states in sorted(summary.by_model.items()):
        for state, count in sorted(states.items()):
            per_model.add_metric([model, state], count)
    yield per_model
    oldest = summary.oldest_unfinished_at
    yield _gauge(
        "obliviate_queue_oldest_unfinished_age_seconds",
        "Age of the oldest queued or running deletion request (0 when none).",
        0.0 if oldest is None else max(summary.now - oldest, 0.0),
    )
    deadline = summary.oldest_unfinished_deadline
    yield _gauge(
        "obliviate_queue_oldest_unfinished_deadline_seconds",
        "Seconds until the oldest unfinished request's deadline (negative when overdue; "
        "0 when nothing is unfinished).",
        0.0 if deadline is None else deadline - summary.now,
    )
    yield _gauge(
        "obliviate_queue_max_sla_fraction",
        "The largest share of its SLA any unfinished request has used (1 = at the deadline).",
        summary.max_sla_fraction,
    )
    yield _gauge(
        "obliviate_queue_past_deadline",
        "Unfinished deletion requests already past their deadline.",
        float(summary.past_deadline),
    )
    yield _gauge(
        "obliviate_queue_retrying",
        "Queued requests waiting for a retry after a failed attempt.",
        float(summary.retrying),
    )
    yield _gauge(
        "obliviate_model_leases_held",
        "Models a worker currently holds a live lease on (workers busy forgetting).",
        float(summary.leases_held),
    )


def _histogram_family(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _history_metrics(history: History) -> Iterator[Metric]:
    finished = CounterMetricFamily(
        "obliviate_requests_finished",
        "Deletion requests that reached a final state, by model and outcome.",
        labels=["model", "outcome"],
    )
    retries = CounterMetricFamily(
        "obliviate_request_retries",
        "Attempts beyond the first (failures and lease expiries) of finished requests.",
        labels=["model"],
    )
    missed = CounterMetricFamily(
        "obliviate_requests_sla_missed",
        "Finished deletion requests that finished after their deadline.",
        labels=["model"],
    )
    completion = _histogram_family(
        "obliviate_request_completion_seconds",
        "Seconds from acceptance (202) to a final state, by model and outcome.",
        ["model", "outcome"],
    )
    fraction = _histogram_family(
        "obliviate_request_sla_fraction",
        "Time to completion as a fraction of the request's SLA (1 = at the deadline).",
        ["model"],
    )
    retrain = _histogram_family(
        "obliviate_retrain_seconds",
        "Wall seconds of each retrain (one per coalesced batch), by model.",
        ["model"],
    )
    shard = _histogram_family(
        "obliviate_shard_retrain_seconds",
        "Each retrained shard's share of its batch's retrain wall time, by model.",
        ["model"],
    )
    for model in history.models:
        for outcome, count in model.finished.items():
            finished.add_metric([model.model, outcome], count)
        retries.add_metric([model.model], model.retries)
        missed.add_metric([model.model], model.sla_missed)
        for outcome, hist in model.completion.items():
            completion.add_metric([model.model, outcome], hist.buckets(), hist.total)
        for family, hist in (
            (fraction, model.sla_fraction),
            (retrain, model.retrain),
            (shard, model.shard_retrain),
        ):
            family.add_metric([model.model], hist.buckets(), hist.total)
    yield from (finished, retries, missed, completion, fraction, retrain, shard)


class GoldStandardCollector(Collector):
    """The latest gold-standard audit outcome per model (breach flag and timestamp).

    Records are read again only when the directory changes (its modification time), so a
    scrape costs a ``stat`` when no audit ran.

    Args:
        workspace_root: the workspace directory.
    """

    def __init__(self, workspace_root: Path) -> None:
        self.directory = Path(workspace_root) / GOLD_STANDARD_DIR
        self._lock = threading.Lock()
        self._seen: tuple[float, int] | None = None
        self._latest: dict[str, dict[str, Any]] = {}

    def latest(self) -> dict[str, dict[str, Any]]:
        """``model -> record`` of the newest audit of each model."""
        with self._lock:
            try:
                stat = self.directory.stat()
                files = sorted(self.directory.glob("*.json"))
            except OSError:
                self._seen, self._latest = None, {}
                return {}
            key = (stat.st_mtime, len(files))
            if key != self._seen:
                self._latest = _latest_records(files)
                self._seen = key
            return dict(self._latest)

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not read the audit records."""
        return []

    def collect(self) -> Iterator[Metric]:
        breach = GaugeMetricFamily(
            "obliviate_gold_standard_breach",
            "1 when the latest gold-standard audit of the model found a metric outside "
            "tolerance, 0 when it passed.",
            labels=["model"],
        )
        when = GaugeMetricFamily(
            "obliviate_gold_standard_last_audit_timestamp_seconds",
            "Unix time of the latest gold-standard audit of the model.",
            labels=["model"],
        )
        for model, record in sorted(self.latest().items()):
            breach.add_metric([model], 0.0 if record.get("ok") else 1.0)
            when.add_metric([model], _epoch(str(record.get("recorded_at", ""))))
        yield breach
        yield when


def _latest_records(files: list[Path]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a torn or foreign file is not an audit
        if not isinstance(data, dict) or data.get("kind") != "gold_standard_audit":
            continue
        model = str(data.get("model", ""))
        if model and str(data.get("recorded_at", "")) >= str(
            latest.get(model, {}).get("recorded_at", "")
        ):
            latest[model] = data
    return latest


def _epoch(iso_time: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
