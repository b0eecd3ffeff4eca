"""Prometheus metrics, one registry per app (so several apps in one process stay apart).

Two kinds live here:

* **in-process counters** of this API process: HTTP traffic, deletion submissions and
  predictions (per process: run one API process per host, or sum them);
* **durable aggregates** computed at scrape time by the collectors of
  :mod:`obliviate.service.collectors`: queue depth and SLA pressure, completion times,
  retrain latencies, retries and dead requests (from the request table the workers write),
  and the latest gold-standard audit outcome (from its JSON records). Any API process
  therefore reports the whole deployment, including workers on other machines.

``deploy/prometheus/obliviate-alerts.yml`` holds alerting rules over these names; a test
checks that every metric a rule uses is exported.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from obliviate.service.collectors import GoldStandardCollector, TableCollector
from obliviate.service.queue import RequestQueue
from obliviate.service.stats import QueueStats

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServiceMetrics:
    """The app's metrics and their private registry.

    Args:
        queue: the request queue (its engine and clock feed the table aggregates).
        workspace_root: the workspace directory (for gold-standard audit records); ``None``
            leaves the gold-standard gauges out.
        cache_seconds: how long table aggregates are reused between scrapes.
    """

    def __init__(
        self,
        queue: RequestQueue,
        *,
        workspace_root: Path | None = None,
        cache_seconds: float = 5.0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "obliviate_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "obliviate_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.submissions = Counter(
            "obliviate_unlearn_submissions",
            "Deletion submissions by outcome (accepted, replayed, conflict).",
            ["outcome"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "obliviate_predictions",
            "Prediction requests answered, by model.",
            ["model"],
            registry=self.registry,
        )
        self.stats = QueueStats(queue.engine, clock=queue.clock)
        self.registry.register(TableCollector(self.stats, cache_seconds=cache_seconds))
        self.gold_standard = (
            None if workspace_root is None else GoldStandardCollector(workspace_root)
        )
        if self.gold_standard is not None:
            self.registry.register(self.gold_standard)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
