"""The service's configuration: one frozen, validated object shared by server and worker.

Read it from ``OBLIVIATE_SERVICE_*`` environment variables with :meth:`ServiceSettings.from_env`
(the CLI does, then applies its own flags), or build it in code. Every field is checked in
``__post_init__`` and every bad field is reported at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.errors import ConfigError

__all__ = ["ENV_PREFIX", "ServiceSettings"]

ENV_PREFIX = "OBLIVIATE_SERVICE_"
_DAY = 86_400.0


@dataclass(frozen=True)
class ServiceSettings:
    """How the unlearning service runs over one workspace.

    Attributes:
        workspace: the workspace directory the service serves.
        database_url: overrides the workspace manifest's database URL (e.g. to keep a
            PostgreSQL password in the environment instead of a file); ``None`` keeps it.
        batch_window_seconds: a request waits this long for others on the same model to join
            it, so that one retrain answers all of them (coalescing).
        max_batch: the most requests one retrain answers.
        lease_seconds: how long a worker owns claimed requests without a heartbeat; a
            crashed worker's requests are redelivered after at most this long.
        heartbeat_seconds: how often a busy worker extends its lease (default: a third of
            ``lease_seconds``).
        max_attempts: attempts before a request is declared dead.
        retry_backoff_seconds: delay before the first retry; doubles on each further one.
        sla_seconds: the deadline recorded with each request (default one month, the GDPR
            Art. 12(3) response time).
        idempotency_retention_days: how long an ``Idempotency-Key`` is remembered (at least
            the statutory window, 90 days by default).
        max_body_bytes: request bodies larger than this are refused with 413.
        max_ids_per_request: the most sample ids one deletion request may name.
        max_predict_rows: the most feature rows one prediction request may send.
        require_idempotency_key: ``POST /v1/unlearn`` without the header gets 400.
        group_commit_max_wait_ms: how long the committer waits for more concurrent POSTs
            before committing them in one transaction (0 commits whatever is waiting).
        group_commit_max_batch: the most POSTs committed in one transaction.
        model_refresh_seconds: how often the server checks for a newly activated version.
        poll_seconds: how long an idle worker sleeps between empty claims.
        prune_interval_seconds: how often a worker deletes idempotency keys past their
            retention.
        metrics_cache_seconds: how long ``/metrics`` reuses its table aggregates (so a burst
            of scrapes costs one scan).
        auth_cache_seconds: how long a verified API key is trusted without a database
            lookup (so a revocation takes effect within this time); 0 checks every request.
        gold_audit_seconds: when set, a worker runs the gold-standard audit
            (``obliviate audit gold-standard``) for every served model at most this often,
            once deletions arrived since the last audit; the outcome feeds
            ``obliviate_gold_standard_breach`` and its alert. ``None`` turns it off.
        gold_audit_test: the registered (non-deletable) dataset the audit tests on;
            required with ``gold_audit_seconds``.
        freeze_gc_at_startup: once the app has started, move every object alive (torch's
            and the libraries' import graph, hundreds of thousands of objects) out of the
            garbage collector's view (``gc.freeze``). A full collection then scans only
            objects made since, so its pause no longer stalls every in-flight request (it
            was most of ``POST /v1/unlearn``'s p99). The app owns its process when served,
            so this process-wide switch is on by default.
    """

    workspace: Path = field(default=Path(".obliviate"))
    database_url: str | None = None
    batch_window_seconds: float = 1.0
    max_batch: int = 64
    lease_seconds: float = 30.0
    heartbeat_seconds: float | None = None
    max_attempts: int = 3
    retry_backoff_seconds: float = 5.0
    sla_seconds: float = 30 * _DAY
    idempotency_retention_days: float = 90.0
    max_body_bytes: int = 1_048_576
    max_ids_per_request: int = 10_000
    max_predict_rows: int = 1_024
    require_idempotency_key: bool = True
    group_commit_max_wait_ms: float = 0.0
    group_commit_max_batch: int = 256
    model_refresh_seconds: float = 0.25
    poll_seconds: float = 0.25
    prune_interval_seconds: float = 3600.0
    metrics_cache_seconds: float = 5.0
    auth_cache_seconds: float = 1.0
    gold_audit_seconds: float | None = None
    gold_audit_test: str | None = None
    freeze_gc_at_startup: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "workspace", Path(self.workspace))
        problems: list[str] = []

        def need(name: str, ok: bool, allowed: str) -> None:
            if not ok:
                problems.append(f"{name}={getattr(self, name)!r} ({allowed})")

        positive = "must be > 0"
        need("batch_window_seconds", self.batch_window_seconds >= 0, "must be >= 0")
        need("max_batch", self.max_batch >= 1, "must be >= 1")
        need("lease_seconds", self.lease_seconds > 0, positive)
        need(
            "heartbeat_seconds",
            self.heartbeat_seconds is None or 0 < self.heartbeat_seconds < self.lease_seconds,
            "must be > 0 and < lease_seconds",
        )
        need("max_attempts", self.max_attempts >= 1, "must be >= 1")
        need("retry_backoff_seconds", self.retry_backoff_seconds >= 0, "must be >= 0")
        need("sla_seconds", self.sla_seconds > 0, positive)
        need("idempotency_retention_days", self.idempotency_retention_days > 0, positive)
        need("max_body_bytes", self.max_body_bytes >= 1024, "must be >= 1024")
        need("max_ids_per_request", self.max_ids_per_request >= 1, "must be >= 1")
        need("max_predict_rows", self.max_predict_rows >= 1, "must be >= 1")
        need("group_commit_max_wait_ms", self.group_commit_max_wait_ms >= 0, "must be >= 0")
        need("group_commit_max_batch", self.group_commit_max_batch >= 1, "must be >= 1")
        need("model_refresh_seconds", self.model_refresh_seconds >= 0, "must be >= 0")
        need("poll_seconds", self.poll_seconds > 0, positive)
        need("prune_interval_seconds", self.prune_interval_seconds > 0, positive)
        need("metrics_cache_seconds", self.metrics_cache_seconds >= 0, "must be >= 0")
        need("auth_cache_seconds", 0 <= self.auth_cache_seconds <= 60, "must be in [0, 60]")
        need(
            "gold_audit_seconds",
            self.gold_audit_seconds is None or self.gold_audit_seconds > 0,
            "must be > 0 or None",
        )
        need(
            "gold_audit_test",
            (self.gold_audit_seconds is None) or bool(self.gold_audit_test),
            "a registered test dataset is required when gold_audit_seconds is set",
        )
        if problems:
            raise ConfigError("invalid ServiceSettings: " + "; ".join(problems) + ".")

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats of a busy worker."""
        return self.heartbeat_seconds or self.lease_seconds / 3

    @property
    def idempotency_retention_seconds(self) -> float:
        """:attr:`idempotency_retention_days` in seconds."""
        return self.idempotency_retention_days * _DAY

    def replace(self, **changes: Any) -> ServiceSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the workspace as a string)."""
        data = dataclasses.asdict(self)
        data["workspace"] = str(self.workspace)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceSettings:
        """The inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown ServiceSettings fields {unknown}; allowed: {sorted(names)}."
            )
        return cls(**dict(data))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServiceSettings:
        """Settings from ``OBLIVIATE_SERVICE_<FIELD>`` variables, then ``overrides``.

        ``OBLIVIATE_WORKSPACE`` is honoured for the workspace when the service-specific
        variable is absent, so the CLI and the service agree by default.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        if "workspace" not in values and env.get("OBLIVIATE_WORKSPACE"):
            values["workspace"] = Path(env["OBLIVIATE_WORKSPACE"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)


def _parse(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    try:
        if "bool" in kind:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes")
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return None if raw.strip().lower() in ("", "none") else float(raw)
        if kind.startswith("Path"):
            return Path(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}."
        ) from None
    return raw or None
