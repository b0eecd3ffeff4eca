"""Reports: a Markdown table and a self-contained HTML page with embedded plots.

The HTML page embeds its plots as base64 PNG (matplotlib, Agg backend), so it can be
attached to a ticket or an audit record as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.errors import DataError
from obliviate.evaluation.report import AggregateReport, EvaluationReport, aggregate

__all__ = ["ReportPaths", "markdown_table", "write_report"]

Reports = Mapping[str, Sequence[EvaluationReport]] | Sequence[EvaluationReport]


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` wrote the report."""

    markdown: Path
    html: Path
    json: Path


def _normalise(reports: Reports) -> dict[str, list[EvaluationReport]]:
    if isinstance(reports, Mapping):
        grouped = {str(k): list(v) for k, v in reports.items()}
    else:
        grouped = {"model": list(reports)}
    if not grouped or any(not v for v in grouped.values()):
        raise DataError("write_report needs at least one report per method.")
    return grouped


def _fmt(mean: float | None, std: float | None, seeds: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" if seeds < 2 or std is None else f"{mean:.2f}±{std:.2f}"


def markdown_table(aggregates: Mapping[str, AggregateReport]) -> str:
    """One row per (method, metric): value, reference, |gap|, good direction."""
    lines = [
        "| method | metric | value | reference | abs. gap | good |",
        "|---|---|---|---|---|---|",
    ]
    for method, agg in aggregates.items():
        for m in agg.metrics:
            lines.append(
                f"| {method} | {m.name} | {_fmt(m.mean, m.std, m.seeds)} | "
                f"{_fmt(m.reference_mean, m.reference_std, m.seeds)} | "
                f"{_fmt(m.gap_mean, m.gap_std, m.seeds)} | {m.good} |"
            )
        lines.append(
            f"| {method} | **Avg. Gap** | {_fmt(agg.avg_gap_mean, agg.avg_gap_std, agg.seeds)} "
            "| 0 | - | lower |"
        )
    return "\n".join(lines)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _metric_plot(aggregates: Mapping[str, AggregateReport]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    for agg in aggregates.values():
        for m in agg.metrics:
            if m.name not in names and m.reference_mean is not None and m.good != "lower":
                names.append(m.name)
    cols = 4
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    methods = list(aggregates)
    for ax, name in zip(axes.ravel(), names, strict=False):
        means, stds, refs = [], [], []
        for method in methods:
            try:
                m = aggregates[method].metric(name)
            except KeyError:
                means.append(np.nan)
                stds.append(0.0)
                refs.append(np.nan)
                continue
            means.append(m.mean)
            stds.append(m.std)
            refs.append(m.reference_mean if m.reference_mean is not None else np.nan)
        x = np.arange(len(methods))
        ax.bar(x, means, yerr=stds, color="#4C72B0", capsize=3, label="model")
        ax.scatter(x, refs, color="#DD8452", marker="_", s=600, linewidths=3, label="reference")
        ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=7)
        ax.set_title(name, fontsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    if names:
        axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _histograms(method: str, reports: Sequence[EvaluationReport]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in ("forget", "retain", "test") if f"model/{s}" in reports[0].confidences]
    if not splits:
        return None
    fig, axes = plt.subplots(1, len(splits), figsize=(3.6 * len(splits), 2.6), squeeze=False)
    bins = np.linspace(0.0, 1.0, 26)
    for ax, split in zip(axes.ravel(), splits, strict=True):
        for side, color in (("model", "#4C72B0"), ("reference", "#DD8452")):
            key = f"{side}/{split}"
            arrays = [r.confidences[key] for r in reports if key in r.confidences]
            if arrays:
                ax.hist(
                    np.concatenate(arrays),
                    bins=bins,
                    alpha=0.55,
                    density=True,
                    color=color,
                    label=side,
                )
        ax.set_title(f"{method}: {split} (true-class confidence)", fontsize=8)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or "report"


def write_report(
    *,
    reports: Reports,
    out_dir: str | Path,
    title: str,
    notes: Sequence[str] = (),
    stem: str | None = None,
) -> ReportPaths:
    """Writes ``<stem>.md``, ``<stem>.html`` (self-contained) and ``<stem>.json``.

    Args:
        reports: per-seed reports, or a mapping method label -> per-seed reports.
        out_dir: the directory (created if missing).
        title: the report's title; ``stem`` defaults to its slug.
        notes: paragraphs added under the title (conditions, caveats).
        stem: the file name stem.

    Raises:
        DataError: no reports.
    """
    grouped = _normalise(reports)
    aggregates = {method: aggregate(items) for method, items in grouped.items()}
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / (stem or _slug(title))
    table = markdown_table(aggregates)
    legend = (
        "Every forgetting metric's target is the retrained reference's value, not an extreme; "
        "values are mean±std over seeds; ensemble-attack references are the ideal "
        "retrain-vs-retrain values."
    )
    md = [f"# {title}", "", *[f"{n}\n" for n in notes], legend, "", table, ""]
    md_path = base.with_suffix(".md")
    md_path.write_text("\n".join(md))

    descriptions: dict[str, str] = {}
    for agg in aggregates.values():
        for m in agg.metrics:
            descriptions.setdefault(m.name, m.description)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in descriptions.items()
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        *[f"<p>{html.escape(n)}</p>" for n in notes],
        f"<p>{html.escape(legend)}</p>",
        _html_table(aggregates),
        "<h2>Each metric against its reference</h2>",
        f'<img alt="metrics" src="data:image/png;base64,{_metric_plot(aggregates)}">',
        "<h2>Confidence histograms</h2>",
    ]
    for method, items in grouped.items():
        image = _histograms(method, items)
        if image is not None:
            body.append(f'<img alt="{html.escape(method)}" src="data:image/png;base64,{image}">')
    body.append(f"<h2>Metric definitions</h2><table>{rows}</table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;"
        "font-size:13px}img{max-width:100%}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
    html_path = base.with_suffix(".html")
    html_path.write_text(page)
    json_path = base.with_suffix(".json")
    payload = {
        "title": title,
        "notes": list(notes),
        "methods": {
            method: {
                "aggregate": aggregates[method].to_dict(),
                "reports": [r.to_dict() for r in items],
            }
            for method, items in grouped.items()
        },
    }
    json_path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return ReportPaths(markdown=md_path, html=html_path, json=json_path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _html_table(aggregates: Mapping[str, AggregateReport]) -> str:
    head = (
        "<table><tr><th>method</th><th>metric</th><th>value</th><th>reference</th>"
        "<th>abs. gap</th><th>good</th></tr>"
    )
    rows = []
    for method, agg in aggregates.items():
        for m in agg.metrics:
            cells = [
                method,
                m.name,
                _fmt(m.mean, m.std, m.seeds),
                _fmt(m.reference_mean, m.reference_std, m.seeds),
                _fmt(m.gap_mean, m.gap_std, m.seeds),
                m.good,
            ]
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        gap = _fmt(agg.avg_gap_mean, agg.avg_gap_std, agg.seeds)
        rows.append(
            f"<tr><td>{html.escape(method)}</td><td><b>Avg. Gap</b></td><td>{gap}</td>"
            "<td>0</td><td>-</td><td>lower</td></tr>"
        )
    return head + "".join(rows) + "</table>"
