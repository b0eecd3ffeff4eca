"""`obliviate demo` (what `make demo` runs) tells the whole story and every check passes."""

from __future__ import annotations

import pytest

from obliviate.cli.app import main


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_end_to_end_offline(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo"])
    assert exited.value.code in (0, None)
    out = " ".join(capsys.readouterr().out.split())
    assert "SISA forgot 30 samples (exact)" in out
    assert "Verify digits-sisa v3: OK" in out
    assert "Signed receipt for request" in out and "inclusion proof OK" in out
    assert "FAILED" not in out and "Done in" in out
