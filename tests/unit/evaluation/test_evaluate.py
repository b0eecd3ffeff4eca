"""The front door, aggregation over seeds and the report files."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from obliviate.errors import ConfigError, UnknownNameError
from obliviate.evaluation import (
    EnsembleOutputs,
    EvalData,
    aggregate,
    evaluate,
    write_report,
)


def _split(n: int, seed: int) -> EvalData:
    rng = np.random.default_rng(seed)
    return EvalData(features=rng.normal(size=(n, 4)), labels=rng.integers(0, 3, n))


def _linear(seed: int):  # type: ignore[no-untyped-def]
    w = np.random.default_rng(seed).normal(size=(4, 3))

    def proba(x: np.ndarray) -> np.ndarray:
        z = x @ w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    return proba


FORGET, RETAIN, TEST = _split(20, 0), _split(120, 1), _split(60, 2)


def test_every_metric_has_value_reference_gap_and_direction() -> None:
    report = evaluate(
        model=_linear(0),
        reference=_linear(1),
        forget=FORGET,
        retain=RETAIN,
        test=TEST,
        seconds=1.5,
        reference_seconds=30.0,
        sample_passes=100,
        reference_sample_passes=1000,
    )
    ua = report.metric("UA")
    assert ua.reference is not None and ua.gap == pytest.approx(abs(ua.value - ua.reference))
    names = [m.name for m in report.metrics]
    for name in ("UA", "RA", "TA", "MIA-Efficacy", "MIA-Efficacy (balanced)", "RTE (s)"):
        assert name in names
    assert "MIA modified_entropy (forget-vs-test AUC)" in names
    expected = np.mean([report.metric(n).gap for n in ("UA", "RA", "TA", "MIA-Efficacy")])
    assert report.avg_gap == pytest.approx(expected)
    assert report.metric("RTE (s)").good == "lower"
    assert all(m.good == "match reference" for m in report.metrics if m.name.startswith("MIA"))
    assert set(report.confidences) >= {"model/forget", "reference/test"}
    with pytest.raises(UnknownNameError, match="UA"):
        report.metric("nope")


def test_identical_model_and_reference_have_zero_gaps() -> None:
    report = evaluate(
        model=_linear(0), reference=_linear(0), forget=FORGET, retain=RETAIN, test=TEST
    )
    assert report.avg_gap == 0.0
    assert all(m.gap == 0.0 for m in report.metrics)


def test_without_forget_set_or_reference() -> None:
    report = evaluate(
        model=_linear(0),
        forget=None,
        retain=RETAIN,
        test=TEST,
        attacks=("svc_training_privacy",),
    )
    assert [m.name for m in report.metrics] == ["RA", "TA", "MIA retain-vs-test"]
    assert report.avg_gap is None and report.metric("RA").gap is None
    with pytest.raises(ConfigError, match="forget"):
        evaluate(model=_linear(0), forget=None, retain=RETAIN, test=TEST)


def test_ensemble_attacks_need_an_ensemble_and_report_reference_values() -> None:
    with pytest.raises(ConfigError, match="ensemble"):
        evaluate(model=_linear(0), forget=FORGET, retain=RETAIN, test=TEST, attacks=("ulira",))
    rng = np.random.default_rng(0)

    def probs(n: int) -> np.ndarray:
        return rng.dirichlet(np.ones(3), size=(n, 20)).astype(np.float32)

    ensemble = EnsembleOutputs(
        forget_labels=FORGET.labels,
        unlearned_probs=probs(6),
        retrained_probs=probs(6),
        unlearned_ra=np.full(6, 90.0),
        retrained_ra=np.full(6, 90.0),
        unlearned_ta=np.full(6, 80.0),
        retrained_ta=np.full(6, 80.0),
    )
    report = evaluate(
        model=_linear(0),
        forget=FORGET,
        retain=RETAIN,
        test=TEST,
        attacks=("ulira", "competition"),
        ensemble=ensemble,
    )
    assert report.metric("U-LiRA AUC").reference == 50.0
    f = report.metric("Forgetting quality F")
    assert f.reference is not None and 0.0 <= f.reference <= 1.0


def test_aggregate_mean_and_sample_std_over_seeds() -> None:
    reports = [
        evaluate(
            model=_linear(s),
            reference=_linear(9),
            forget=FORGET,
            retain=RETAIN,
            test=TEST,
            attacks=("svc_jia",),
            seed=s,
        )
        for s in range(3)
    ]
    agg = aggregate(reports)
    ua = [r.value("UA") for r in reports]
    assert agg.metric("UA").mean == pytest.approx(np.mean(ua))
    assert agg.metric("UA").std == pytest.approx(np.std(ua, ddof=1))
    assert agg.seeds == 3 and agg.avg_gap_mean is not None


@pytest.mark.slow
def test_write_report_markdown_html_json(tmp_path: Path) -> None:
    reports = {
        name: [
            evaluate(
                model=_linear(s),
                reference=_linear(9),
                forget=FORGET,
                retain=RETAIN,
                test=TEST,
                attacks=("svc_jia",),
                seed=s,
            )
            for s in range(2)
        ]
        for name in ("A", "B")
    }
    paths = write_report(reports=reports, out_dir=tmp_path / "out", title="Toy report")
    md = paths.markdown.read_text()
    assert "| A | UA |" in md and "Avg. Gap" in md and "±" in md
    page = paths.html.read_text()
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 3  # metric plot + one histogram panel per method
    assert base64.b64decode(images[0])[:4] == b"\x89PNG"
    assert 'src="http' not in page  # self-contained
    assert paths.json.exists() and paths.markdown.name == "toy_report.md"
