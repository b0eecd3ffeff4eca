"""`obliviate methods` and `obliviate forget --method`: approximate forgetting from the CLI."""

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
def workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=48)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        features=(rng.normal(0, 3, size=(3, 4))[labels] + rng.normal(size=(48, 4))).astype(
            np.float32
        ),
        labels=labels,
        sample_ids=np.array([f"p{i}" for i in range(48)]),
    )
    ws = str(tmp_path / "ws")
    assert run(capsys, "workspace", "init", ws)[0] == 0
    assert run(capsys, "data", "register", str(path), "--dataset", "d", "-w", ws)[0] == 0
    code, _, err = run(
        capsys, "train", "-w", ws, "--name", "m", "--dataset", "d", "--strategy", "retrain",
        "--epochs", "2",
    )  # fmt: skip
    assert code == 0, err
    return ws


@pytest.mark.integration
def test_methods_lists_every_strategy_and_method_with_its_guarantee(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "methods")
    assert code == 0
    for name in (
        "sisa",
        "retrain",
        "finetune",
        "gradient_ascent",
        "salun",
        "influence",
        "eu_k",
        "neggrad_eu_k",
    ):
        assert name in out
    assert "exact" in out and "approximate" in out


@pytest.mark.integration
@pytest.mark.parametrize("method", ["finetune", "eu_k", "neggrad_eu_k"])
def test_forget_with_a_method_is_labelled_approximate_and_verify_says_so(
    workspace: str, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    code, out, err = run(
        capsys, "forget", "-w", workspace, "--model", "m", "--sample", "p3", "--method", method
    )
    assert code == 0, err
    assert f"approximate: {method}" in out
    code, out, _ = run(capsys, "verify", "m", "-w", workspace)
    assert code == 2 and "forgotten approximately" in out
    # An exact forget afterwards removes the approximately forgotten sample for good.
    code, out, err = run(capsys, "forget", "-w", workspace, "--model", "m", "--sample", "p4")
    assert code == 0, err
    code, out, _ = run(capsys, "verify", "m", "-w", workspace)
    assert code == 0 and "OK" in out


@pytest.mark.integration
def test_forget_with_an_unknown_method_fails_cleanly(
    workspace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "forget", "-w", workspace, "--model", "m", "--sample", "p3", "--method", "nope"
    )
    assert code == 1 and "nope" in err
    code, out, _ = run(capsys, "verify", "m", "-w", workspace)
    assert code == 0


@pytest.mark.integration
def test_forget_names_other_models_of_the_dataset_that_still_hold_the_samples(
    workspace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "train", "-w", workspace, "--name", "other", "--dataset", "d",
        "--strategy", "retrain", "--epochs", "2",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "forget", "-w", workspace, "--model", "m", "--sample", "p5")
    assert code == 0, err
    assert "still serve deleted samples" in out and "other (1)" in out
    # Once the other model forgets too, nothing is left to warn about, from either side.
    code, out, err = run(capsys, "forget", "-w", workspace, "--model", "other", "--sample", "p5")
    assert code == 0, err
    assert "still serve deleted samples" not in out
    code, out, _ = run(capsys, "verify", "other", "-w", workspace)
    assert code == 0 and "OK" in out
