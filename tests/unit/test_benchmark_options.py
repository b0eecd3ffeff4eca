"""Bad options of the Jia benchmark scripts: refused before any work, nothing written.

The scripts spend minutes to hours and overwrite their results at the end, so an option that
cannot be honoured (no validation folds, a reported trial's seed among the validation ones)
must stop them at the start, leaving the tuned file and the results as they were.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TUNED = BENCHMARKS / "results" / "approximate_jia_tuned.json"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_knob_folds_below_one_is_refused_and_the_tuned_file_kept() -> None:
    before = TUNED.read_bytes()
    done = _run("approximate_jia.py", "--knobs", "--knob-folds", "0")
    assert done.returncode != 0
    assert "--knob-folds must be at least 1; got 0" in done.stderr
    assert TUNED.read_bytes() == before


def test_validation_folds_refuses_no_folds(tmp_path: Path) -> None:
    out = tmp_path / "folds"
    done = _run("jia_validation_folds.py", "--folds", "0", "--out", str(out))
    assert done.returncode != 0
    assert "--first-seed and --folds must be at least 1" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_validation_folds_refuses_a_reported_trials_seed(tmp_path: Path) -> None:
    out = tmp_path / "folds"
    done = _run("jia_validation_folds.py", "--first-seed", "95", "--folds", "10", "--out", str(out))
    assert done.returncode != 0
    assert "seeds [100] are reported trials' seeds" in done.stderr
    assert list(tmp_path.iterdir()) == []
