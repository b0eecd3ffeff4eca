"""`obliviate audit ...` end to end on a real workspace: verify, receipts, keys, tampering."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.cli import audit_cmds
from obliviate.ledger.schema import LEAVES
from obliviate.testing import make_blobs

runner = CliRunner()


@pytest.fixture
def ws_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ws"
    with Workspace.init(path) as ws:
        ws.register(make_blobs(n=40, subjects=4), dataset="d")
        ws.train(
            name="m",
            dataset="d",
            config=SISAConfig(shards=2, slices=2, train=TrainConfig(epochs=1, batch_size=8)),
        )
        ws.forget(model="m", subject_ids=["u2"], request_id="req-a")
    yield path


def audit(*args: str) -> tuple[int, str]:
    result = runner.invoke(audit_cmds.app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.output


@pytest.mark.integration
@pytest.mark.slow
def test_audit_story(ws_path: Path, tmp_path: Path) -> None:
    ws = str(ws_path)
    code, out = audit("checkpoint", "--out", str(tmp_path / "cp.txt"), "-w", ws)
    assert code == 0 and out == (tmp_path / "cp.txt").read_text()
    code, out = audit("keys", "export", "--out", str(tmp_path / "keys.vkey"), "-w", ws)
    assert code == 0 and out.count("+") >= 2
    receipt = ws_path / "receipts" / "req-a.json"
    code, out = audit("verify-receipt", str(receipt), "--public-key", str(tmp_path / "keys.vkey"))
    assert code == 0 and "OK receipt for request req-a (exact)" in out
    code, out = audit("verify-receipt", str(receipt))
    assert code == 0 and "warning" in out
    code, out = audit("keys", "rotate", "-w", ws)
    assert code == 0 and "New signing key" in out
    code, out = audit("verify", "--checkpoint", str(tmp_path / "cp.txt"), "-w", ws)
    assert code == 0 and "OK obliviate/" in out and "consistent with the saved" in out
    # An old receipt still verifies against the exported (now rotated) key list.
    code, out = audit("keys", "export", "--out", str(tmp_path / "all.vkey"), "-w", ws)
    assert len(out.splitlines()) == 2
    code, _ = audit("verify-receipt", str(receipt), "-w", ws)
    assert code == 0


@pytest.mark.integration
@pytest.mark.slow
def test_audit_reports_tampering_clearly(ws_path: Path, tmp_path: Path) -> None:
    receipt = ws_path / "receipts" / "req-a.json"
    data = json.loads(receipt.read_text())
    data["body"]["samples"] = data["body"]["samples"][:-1]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    code, out = audit("verify-receipt", str(forged), "-w", str(ws_path))
    assert code == 1 and "FAILED" in out and "changed after signing" in out
    with Workspace.open(ws_path) as ws, ws.provenance.engine.begin() as conn:
        conn.execute(sa.update(LEAVES).where(LEAVES.c.idx == 2).values(event='{"type":"plan"}'))
    code, out = audit("verify", "-w", str(ws_path))
    assert code == 1 and "leaf 2 does not match its stored hash" in out
