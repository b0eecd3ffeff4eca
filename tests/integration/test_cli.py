"""The CLI end to end: register, train, forget, predict, versions, verify, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from obliviate.cli.app import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(3, 4))
    labels = rng.integers(0, 3, size=60)
    path = tmp_path / "people.npz"
    np.savez(
        path,
        features=(centers[labels] + rng.normal(size=(60, 4))).astype(np.float32),
        labels=labels,
        sample_ids=np.array([f"p{i}" for i in range(60)]),
        subject_ids=np.array([f"alice{i % 6}" for i in range(60)]),
    )
    return path


@pytest.mark.integration
def test_cli_story(tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(tmp_path / "ws")
    assert run(capsys, "workspace", "init", ws)[0] == 0
    code, out, _ = run(capsys, "data", "register", str(npz), "--dataset", "people", "-w", ws)
    assert code == 0 and "Registered 60 samples" in out
    code, out, _ = run(capsys, "data", "show", "people", "-w", ws)
    assert "subjects: 6" in out
    code, out, err = run(
        capsys,
        "train",
        "-w",
        ws,
        "--name",
        "m",
        "--dataset",
        "people",
        "--shards",
        "2",
        "--slices",
        "2",
        "--epochs",
        "2",
        "--sharding",
        "by_subject",
    )
    assert code == 0, err
    assert "Trained m" in out
    code, out, err = run(
        capsys, "forget", "-w", ws, "--model", "m", "--subject", "alice2", "--reason", "Art. 17"
    )
    assert code == 0, err
    assert "Forgot 10 sample(s)" in out and "exact" in out
    code, out, _ = run(capsys, "versions", "-w", ws, "--model", "m")
    assert "rolled_back" in out and "retrained" in out
    code, out, _ = run(capsys, "verify", "-w", ws, "m")
    assert code == 0 and "OK" in out
    code, out, _ = run(capsys, "verify", "-w", ws, "m@1")
    assert code == 2 and "FAILED" in out
    preds = tmp_path / "preds.csv"
    code, out, err = run(
        capsys, "predict", "-w", ws, "--model", "m", str(npz), "--output", str(preds)
    )
    assert code == 0, err
    assert "accuracy" in out and preds.read_text().startswith("sample_id,prediction,label")
    code, out, _ = run(capsys, "workspace", "info", "-w", ws)
    assert "people" in out and "sisa" in out


@pytest.mark.integration
def test_cli_errors_are_one_line(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "data", "list", "-w", str(tmp_path / "missing"))
    assert code == 1
    assert err.startswith("error: no workspace") and "Traceback" not in err
    ws = str(tmp_path / "ws")
    run(capsys, "workspace", "init", ws)
    run(capsys, "data", "register", str(npz), "--dataset", "people", "-w", ws)
    code, _, err = run(capsys, "data", "register", str(npz), "--dataset", "people", "-w", ws)
    assert code == 1 and ("duplicate" in err.lower() or "already" in err.lower())
    code, _, err = run(capsys, "train", "-w", ws, "--name", "m", "--dataset", "nope")
    assert code == 1 and "nope" in err
    code, _, err = run(
        capsys, "train", "-w", ws, "--name", "m", "--dataset", "people", "--shards", "0"
    )
    assert code == 1 and "shards" in err
    code, _, err = run(capsys, "data", "register", "no-such-dataset", "-w", ws)
    assert code == 1 and "error:" in err


def tiny_factory() -> object:
    """A user model referenced from a CLI config file as module:function."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


@pytest.mark.integration
def test_cli_config_file_with_a_model_factory(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(tmp_path / "ws")
    run(capsys, "workspace", "init", ws)
    run(capsys, "data", "register", str(npz), "--dataset", "people", "-w", ws)
    config = tmp_path / "sisa.toml"
    config.write_text(
        'shards = 2\nslices = 2\nmodel = "tests.integration.test_cli:tiny_factory"\n'
        "[train]\nepochs = 2\nbatch_size = 8\n"
    )
    code, out, err = run(
        capsys, "train", "-w", ws, "--name", "m", "--dataset", "people", "--config", str(config)
    )
    assert code == 0, err
    code, out, err = run(capsys, "forget", "-w", ws, "--model", "m", "--sample", "p3")
    assert code == 0, err
    assert "Forgot 1 sample(s)" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "no_such_module:make"\n')
    code, _, err = run(
        capsys, "train", "-w", ws, "--name", "m2", "--dataset", "people", "--config", str(bad)
    )
    assert code == 1 and "no_such_module" in err
    code, out, _ = run(capsys, "workspace", "info", "-w", ws)
    assert "m2" not in out  # nothing half-written
