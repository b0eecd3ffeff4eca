"""The periodic gold-standard audit: is the served model still close to a fresh retrain?

The production check: retrain the reference for the forgets since the last audit (cached by
:mod:`obliviate.evaluation.gold`), then check that the served model's RA, TA and a
retain-vs-test membership attack are within configured tolerances of it. After an exact
forget the forgotten samples' features are purged, so UA cannot be measured here; use
``obliviate evaluate --forget`` with a research copy for that. Each outcome is written as
JSON under ``<workspace>/audits/gold-standard/``, and "the last audit" (hence which forgets
are new) is derived from those records.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from obliviate.errors import ConfigError
from obliviate.evaluation.data import EvalData, workspace_data
from obliviate.evaluation.evaluate import evaluate
from obliviate.evaluation.gold import ensure_reference
from obliviate.evaluation.proba import from_strategy
from obliviate.strategies.base import ModelFactory

__all__ = [
    "AuditCheck",
    "AuditOutcome",
    "GoldStandardTolerances",
    "audit_due",
    "audit_records",
    "run_gold_standard_audit",
]

FORMAT_VERSION = 1
_AUDIT_DIR = Path("audits") / "gold-standard"
_CHECKED = (("RA", "ra"), ("TA", "ta"), ("MIA retain-vs-test", "mia"))


@dataclass(frozen=True)
class GoldStandardTolerances:
    """Largest allowed |served - reference| per checked metric, in percentage points.

    Args:
        ra: remaining (retain) accuracy.
        ta: test accuracy.
        mia: the retain-vs-test SVC attack's balanced accuracy.
        retain_limit: evaluate RA and the attack on at most this many active samples
            (drawn with the audit seed); ``None`` uses all.
    """

    ra: float = 2.0
    ta: float = 2.0
    mia: float = 5.0
    retain_limit: int | None = 10_000

    def __post_init__(self) -> None:
        problems = []
        for name in ("ra", "ta", "mia"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                problems.append(f"{name} must be a number >= 0; got {value!r}")
        limit = self.retain_limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 2
        ):
            problems.append(f"retain_limit must be an integer >= 2 or None; got {limit!r}")
        if problems:
            raise ConfigError("invalid GoldStandardTolerances: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        return {
            "kind": "gold_standard_tolerances",
            "format_version": FORMAT_VERSION,
            **asdict(self),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GoldStandardTolerances:
        """Inverse of :meth:`to_dict`; unknown fields are a ConfigError."""
        body = {k: v for k, v in data.items() if k not in ("kind", "format_version")}
        unknown = sorted(set(body) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"unknown GoldStandardTolerances fields {unknown}; "
                f"valid: {sorted(cls.__dataclass_fields__)}."
            )
        return cls(**body)


@dataclass(frozen=True)
class AuditCheck:
    """One checked metric: served vs reference, and whether the gap is within tolerance."""

    metric: str
    served: float
    reference: float
    gap: float
    tolerance: float
    ok: bool


@dataclass(frozen=True)
class AuditOutcome:
    """The outcome of one gold-standard audit.

    Attributes:
        model: the served model.
        served_version: its active version number.
        reference_model: the gold-standard reference's name.
        reference_created: whether the audit trained the reference (else reused).
        checks: every checked metric.
        ok: every check is within tolerance (``False`` = breach).
        deletion_ids: deletion requests since the last audit (the forgets covered).
        last_deletion_id: the newest deletion id covered so far (next audit starts after it).
        recorded_at: ISO-8601 UTC time of the audit.
        seed: the evaluation seed.
        seconds: wall time of the audit, including any reference training.
        path: the JSON record written.
    """

    model: str
    served_version: int | None
    reference_model: str
    reference_created: bool
    checks: tuple[AuditCheck, ...]
    ok: bool
    deletion_ids: tuple[int, ...]
    last_deletion_id: int | None
    recorded_at: str
    seed: int
    seconds: float
    path: str = ""

    @property
    def breaches(self) -> tuple[AuditCheck, ...]:
        """The checks outside tolerance."""
        return tuple(c for c in self.checks if not c.ok)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        body = asdict(self)
        body["checks"] = [asdict(c) for c in self.checks]
        body["deletion_ids"] = list(self.deletion_ids)
        return {"kind": "gold_standard_audit", "format_version": FORMAT_VERSION, **body}


def audit_records(*, workspace: Any, model: str | None = None) -> list[dict[str, Any]]:
    """Recorded audits (as JSON dicts), oldest first, optionally for one model."""
    directory = Path(workspace.root) / _AUDIT_DIR
    records = []
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a torn file is not an audit
        if data.get("kind") == "gold_standard_audit" and (model is None or data["model"] == model):
            records.append(data)
    return sorted(records, key=lambda r: (r["recorded_at"], r.get("path", "")))


def audit_due(*, workspace: Any, model: str, every_seconds: float) -> bool:
    """Whether a periodic audit of ``model`` is due: none yet, or the last is older than
    ``every_seconds`` and deletions arrived since (for a service's scheduler)."""
    records = audit_records(workspace=workspace, model=model)
    if not records:
        return True
    last = records[-1]
    age = datetime.now(UTC) - datetime.fromisoformat(last["recorded_at"])
    newest = last.get("last_deletion_id")
    pending = [
        d for d in workspace.provenance.deletions(model=model) if newest is None or d.id > newest
    ]
    return age.total_seconds() >= every_seconds and bool(pending)


def _write_record(workspace: Any, outcome: AuditOutcome) -> str:
    directory = Path(workspace.root) / _AUDIT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stamp = outcome.recorded_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = directory / f"{stamp}-{outcome.model}.json"
    data = outcome.to_dict()
    data["path"] = str(path)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def run_gold_standard_audit(
    *,
    workspace: Any,
    model: str,
    test: EvalData,
    tolerances: GoldStandardTolerances | None = None,
    seed: int = 0,
    model_factory: ModelFactory | None = None,
    reference_strategy: str | None = None,
) -> AuditOutcome:
    """Retrains (or reuses) the gold reference and checks the served model against it.

    Args:
        workspace: an open :class:`~obliviate.workspace.Workspace`.
        model: the served model's name.
        test: held-out data (a non-deletable registered dataset or a file).
        tolerances: allowed gaps; defaults to :class:`GoldStandardTolerances` defaults.
        seed: evaluation seed (retain subsample, attack sampling).
        model_factory: the served model's factory, if it was trained with one.
        reference_strategy: ``None`` for the model's own strategy and config (an exactly
            forgotten model must then match it with every gap 0), or ``"retrain"``.

    Raises:
        ConfigError: bad tolerances, or a model whose strategy has no reference config.
        UnknownNameError: unknown model.
    """
    started = time.perf_counter()
    tolerances = GoldStandardTolerances() if tolerances is None else tolerances
    if not isinstance(tolerances, GoldStandardTolerances):
        raise ConfigError(f"tolerances must be GoldStandardTolerances; got {type(tolerances)}.")
    record = workspace.provenance.model(model)
    active = workspace.provenance.active_version(model)
    served = workspace.model(model, model_factory=model_factory)
    gold = ensure_reference(
        workspace=workspace,
        model=model,
        model_factory=model_factory,
        strategy=reference_strategy,
    )
    retain = workspace_data(
        workspace=workspace, dataset=record.dataset, limit=tolerances.retain_limit, seed=seed
    )
    report = evaluate(
        model=from_strategy(served),
        reference=from_strategy(gold.strategy),
        forget=None,
        retain=retain,
        test=test,
        attacks=("svc_training_privacy",),
        seed=seed,
    )
    checks = []
    for metric, field in _CHECKED:
        item = report.metric(metric)
        tolerance = float(getattr(tolerances, field))
        reference = float(item.reference if item.reference is not None else float("nan"))
        gap = float(item.gap if item.gap is not None else float("inf"))
        checks.append(
            AuditCheck(
                metric=metric,
                served=item.value,
                reference=reference,
                gap=gap,
                tolerance=tolerance,
                ok=gap <= tolerance,
            )
        )
    previous = audit_records(workspace=workspace, model=model)
    since = previous[-1].get("last_deletion_id") if previous else None
    deletions = [
        d.id for d in workspace.provenance.deletions(model=model) if since is None or d.id > since
    ]
    outcome = AuditOutcome(
        model=model,
        served_version=None if active is None else active.number,
        reference_model=gold.name,
        reference_created=gold.created,
        checks=tuple(checks),
        ok=all(c.ok for c in checks),
        deletion_ids=tuple(deletions),
        last_deletion_id=max(deletions) if deletions else since,
        recorded_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        seed=seed,
        seconds=time.perf_counter() - started,
    )
    path = _write_record(workspace, outcome)
    return AuditOutcome(**{**outcome.__dict__, "path": path})
