"""Evaluation results: per-metric value, reference value and gap; aggregation over seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.errors import DataError, UnknownNameError

__all__ = [
    "AVG_GAP_METRICS",
    "AggregateMetric",
    "AggregateReport",
    "EvaluationReport",
    "MetricValue",
    "aggregate",
]

#: The four metrics Jia et al.'s "Disparity Ave." and SalUn's "Avg. Gap" average.
AVG_GAP_METRICS = ("UA", "RA", "TA", "MIA-Efficacy")

MATCH = "match reference"
LOWER = "lower"


@dataclass(frozen=True)
class MetricValue:
    """One metric of one model.

    Attributes:
        name: e.g. ``"UA"``, ``"MIA-Efficacy"``.
        value: the evaluated model's value.
        reference: the retrained reference's value (or the ideal value for ensemble
            attacks), ``None`` when no reference was given.
        gap: ``|value - reference|``, ``None`` without a reference.
        good: the good direction: ``"match reference"`` for every forgetting metric (the
            target is the retrained model's value, not an extreme) or ``"lower"`` for cost.
        description: what it measures and how to read it.
    """

    name: str
    value: float
    reference: float | None
    gap: float | None
    good: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "name": self.name,
            "value": self.value,
            "reference": self.reference,
            "gap": self.gap,
            "good": self.good,
            "description": self.description,
        }


def metric_value(
    *, name: str, value: float, reference: float | None, good: str, description: str
) -> MetricValue:
    """Builds a :class:`MetricValue`, computing the absolute gap."""
    gap = None if reference is None else abs(float(value) - float(reference))
    return MetricValue(
        name=name,
        value=float(value),
        reference=None if reference is None else float(reference),
        gap=gap,
        good=good,
        description=description,
    )


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """What a forget did, for one model and one evaluation seed.

    Attributes:
        metrics: every metric, in a stable order.
        avg_gap: mean gap over UA, RA, TA and MIA-Efficacy (those present), or ``None``.
        seed: the evaluation seed (SVC sampling, retain subsampling).
        confidences: true-class confidences for the histograms, keyed
            ``"model/forget"``, ``"reference/test"``, ...
        details: anything else worth keeping (counts, attack options).
    """

    metrics: tuple[MetricValue, ...]
    avg_gap: float | None
    seed: int
    confidences: Mapping[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> MetricValue:
        """The metric called ``name``.

        Raises:
            UnknownNameError: listing the metrics this report has.
        """
        for item in self.metrics:
            if item.name == name:
                return item
        names = ", ".join(m.name for m in self.metrics)
        raise UnknownNameError(f"no metric {name!r} in this report; it has: {names}.")

    def value(self, name: str) -> float:
        """The evaluated model's value of metric ``name``."""
        return self.metric(name).value

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (confidence arrays are summarised by their counts)."""
        return {
            "kind": "evaluation_report",
            "format_version": 1,
            "seed": self.seed,
            "avg_gap": self.avg_gap,
            "metrics": [m.to_dict() for m in self.metrics],
            "confidence_counts": {k: int(len(v)) for k, v in self.confidences.items()},
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class AggregateMetric:
    """Mean and standard deviation (ddof=1; 0 for one seed) of one metric over seeds."""

    name: str
    mean: float
    std: float
    reference_mean: float | None
    reference_std: float | None
    gap_mean: float | None
    gap_std: float | None
    good: str
    description: str
    seeds: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class AggregateReport:
    """Per-metric mean +- std over seeds, plus Avg. Gap's mean +- std."""

    metrics: tuple[AggregateMetric, ...]
    avg_gap_mean: float | None
    avg_gap_std: float | None
    seeds: int

    def metric(self, name: str) -> AggregateMetric:
        """The aggregate of metric ``name``."""
        for item in self.metrics:
            if item.name == name:
                return item
        names = ", ".join(m.name for m in self.metrics)
        raise UnknownNameError(f"no metric {name!r} in this aggregate; it has: {names}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "seeds": self.seeds,
            "avg_gap_mean": self.avg_gap_mean,
            "avg_gap_std": self.avg_gap_std,
            "metrics": [m.to_dict() for m in self.metrics],
        }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std


def aggregate(reports: Sequence[EvaluationReport]) -> AggregateReport:
    """Mean and std of every metric over reports from different seeds.

    Metrics missing from some reports are aggregated over the reports that have them.

    Raises:
        DataError: no reports.
    """
    if not reports:
        raise DataError("aggregate needs at least one report.")
    order: list[str] = []
    for report in reports:
        for item in report.metrics:
            if item.name not in order:
                order.append(item.name)
    out: list[AggregateMetric] = []
    for name in order:
        items = [m for r in reports for m in r.metrics if m.name == name]
        mean, std = _mean_std([m.value for m in items])
        refs = [m.reference for m in items if m.reference is not None]
        gaps = [m.gap for m in items if m.gap is not None]
        ref_mean, ref_std = _mean_std(refs) if refs else (None, None)
        gap_mean, gap_std = _mean_std(gaps) if gaps else (None, None)
        out.append(
            AggregateMetric(
                name=name,
                mean=mean,
                std=std,
                reference_mean=ref_mean,
                reference_std=ref_std,
                gap_mean=gap_mean,
                gap_std=gap_std,
                good=items[0].good,
                description=items[0].description,
                seeds=len(items),
            )
        )
    gaps_all = [r.avg_gap for r in reports if r.avg_gap is not None and math.isfinite(r.avg_gap)]
    avg_mean, avg_std = _mean_std(gaps_all) if gaps_all else (None, None)
    return AggregateReport(
        metrics=tuple(out), avg_gap_mean=avg_mean, avg_gap_std=avg_std, seeds=len(reports)
    )
