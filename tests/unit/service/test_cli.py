"""`serve`, `worker` and `keys` through Typer's runner (a throwaway app registering them)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from obliviate import Workspace
from obliviate.cli.service_cmds import keys_app, serve, worker
from obliviate.service.queue import RequestQueue
from obliviate.service.settings import ServiceSettings
from tests.unit.service.conftest import new_request

app = typer.Typer()
app.command("serve")(serve)
app.command("worker")(worker)
app.add_typer(keys_app, name="keys")
runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def test_keys_create_list_revoke(ws_path: Path) -> None:
    created = runner.invoke(
        app, ["keys", "create", "-w", str(ws_path), "--name", "ci", "--scope", "predict"], env=ENV
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("obl_")
    key_id = secret.split("_")[1]
    listed = runner.invoke(app, ["keys", "list", "-w", str(ws_path)], env=ENV)
    assert listed.exit_code == 0 and key_id in listed.stdout and secret not in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", key_id, "-w", str(ws_path)], env=ENV)
    assert revoked.exit_code == 0 and f"revoked {key_id}" in revoked.stdout
    bad = runner.invoke(
        app, ["keys", "create", "-w", str(ws_path), "--name", "x", "--scope", "root"], env=ENV
    )
    assert bad.exit_code != 0


def test_worker_drain_processes_the_queue(ws_path: Path) -> None:
    with Workspace.open(ws_path) as ws:
        queue = RequestQueue(ws.provenance.engine, settings=ServiceSettings(workspace=ws_path))
        request_id = queue.submit(new_request("m", "s1")).request_id
    result = runner.invoke(
        app,
        ["worker", "-w", str(ws_path), "--drain", "--batch-window", "0"],
        env={**ENV, "OBLIVIATE_EXECUTOR": "inline"},
    )
    assert result.exit_code == 0, result.output
    assert "completed 1" in result.output
    with Workspace.open(ws_path) as ws:
        queue = RequestQueue(ws.provenance.engine, settings=ServiceSettings(workspace=ws_path))
        assert queue.get(request_id).state == "completed"


def test_serve_refuses_a_missing_workspace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "-w", str(tmp_path / "none")], env=ENV)
    assert result.exit_code != 0
    assert "no workspace" in str(result.exception)
