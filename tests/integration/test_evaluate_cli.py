"""`obliviate evaluate` and `obliviate audit gold-standard` through Typer's test runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from obliviate import SampleSet, SISAConfig, TrainConfig, Workspace
from obliviate.cli import evaluate_cmds
from obliviate.testing import make_blobs


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("evaluate")(evaluate_cmds.evaluate)
    audit = typer.Typer()
    audit.command("gold-standard")(evaluate_cmds.gold_standard)
    app.add_typer(audit, name="audit")
    return app


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path, Path]:
    data = make_blobs(n=200, classes=3, features=6, seed=1)
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        ws.register(data.subset(np.arange(140)), dataset="train")
        test = data.subset(np.arange(140, 200))
        ws.register(
            SampleSet.from_arrays(
                features=test.features,
                labels=test.labels,
                sample_ids=[f"t{i}" for i in range(len(test))],
                num_classes=3,
                name="heldout",
            ),
            dataset="heldout",
            deletable=False,
        )
        config = SISAConfig(shards=2, train=TrainConfig(epochs=2, batch_size=16))
        ws.train(name="m", dataset="train", config=config)
        forget_rows = np.arange(5)
        ws.forget(model="m", sample_ids=[f"s{i}" for i in forget_rows])
    forget = tmp_path / "forget.npz"
    np.savez(forget, features=data.features[:5], labels=data.labels[:5])
    test_npz = tmp_path / "test.npz"
    np.savez(test_npz, features=data.features[140:], labels=data.labels[140:])
    return root, forget, test_npz


@pytest.mark.integration
@pytest.mark.slow
def test_evaluate_writes_report_and_gold_audit_exits_2_on_breach(
    workspace: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, forget, test_npz = workspace
    runner = CliRunner()
    app = _app()
    out = tmp_path / "reports"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "m",
            "--test",
            "heldout",
            "--forget",
            str(forget),
            "--attacks",
            "svc_jia,threshold_confidence",
            "--out",
            str(out),
            "-w",
            str(root),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "MIA-Efficacy" in result.output and "Avg. Gap" in result.output
    md = (out / "evaluate-m.md").read_text()
    assert "| m | UA |" in md and (out / "evaluate-m.html").exists()

    ok = runner.invoke(
        app,
        [
            "audit",
            "gold-standard",
            "--model",
            "m",
            "--test",
            str(test_npz),
            "--ra",
            "100",
            "--ta",
            "100",
            "--mia",
            "100",
            "-w",
            str(root),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "reused" in ok.output  # evaluate already trained the same reference
    records = list((root / "audits" / "gold-standard").glob("*.json"))
    assert len(records) == 1

    breach = runner.invoke(
        app,
        [
            "audit",
            "gold-standard",
            "--model",
            "m",
            "--test",
            "heldout",
            "--ra",
            "0",
            "--ta",
            "0",
            "--mia",
            "0",
            "--reference-strategy",
            "retrain",
            "-w",
            str(root),
        ],
    )
    assert breach.exit_code == 2, breach.output
    assert "breach:" in breach.output


@pytest.mark.integration
def test_bad_inputs_fail_clearly(workspace: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, _, _ = workspace
    runner = CliRunner()
    result = runner.invoke(
        _app(),
        ["evaluate", "--model", "m", "--test", str(tmp_path / "missing.npz"), "-w", str(root)],
    )
    assert result.exit_code != 0
    assert "no such file" in str(result.exception)
    result = runner.invoke(
        _app(),
        [
            "audit",
            "gold-standard",
            "--model",
            "m",
            "--test",
            "heldout",
            "--ra",
            "-1",
            "-w",
            str(root),
        ],
    )
    assert result.exit_code != 0 and "ra must be" in str(result.exception)
    assert not (root / "audits").exists()  # nothing written on bad input
