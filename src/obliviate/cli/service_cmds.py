"""`obliviate serve`, `obliviate worker` and `obliviate keys`: run the unlearning service.

Settings come from ``OBLIVIATE_SERVICE_*`` variables (see ``ServiceSettings``); the flags
here override them. The server and the worker are separate processes sharing the workspace
database; ``serve --with-worker`` runs one worker thread inside the server for small setups.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from obliviate.cli._common import DEFAULT_WORKSPACE, WorkspaceOption, console, err_console

__all__ = ["keys_app", "serve", "worker"]

keys_app = typer.Typer(
    help="Create, list and revoke API keys (only their hashes are stored).",
    no_args_is_help=True,
)

BatchWindow = Annotated[
    float | None,
    typer.Option("--batch-window", help="Seconds a request waits for others to coalesce."),
]
LeaseSeconds = Annotated[
    float | None, typer.Option("--lease-seconds", help="Worker lease length in seconds.")
]


def _settings(workspace: Path, **overrides: Any) -> Any:
    from obliviate.service.settings import ServiceSettings

    return ServiceSettings.from_env(workspace=workspace, **overrides)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="Also run a worker thread in this process.")
    ] = False,
    batch_window: BatchWindow = None,
    lease_seconds: LeaseSeconds = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    """Serve the HTTP API (uvicorn) over a workspace."""
    import uvicorn

    from obliviate.service.app import create_app

    _logging(verbose)
    settings = _settings(workspace, batch_window_seconds=batch_window, lease_seconds=lease_seconds)
    app = create_app(settings)
    stop = threading.Event()
    thread = None
    if with_worker:
        from obliviate.service.worker import Worker

        state = app.state.obliviate
        runner = Worker(state.workspace, state.queue)
        thread = threading.Thread(
            target=runner.run, kwargs={"stop": stop}, name="obliviate-worker", daemon=True
        )
        thread.start()
    err_console.print(f"serving {settings.workspace} on http://{host}:{port}", highlight=False)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info" if verbose else "warning")
    finally:
        stop.set()
        if thread is not None:
            thread.join()


def worker(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit once nothing is queued or running.")
    ] = False,
    owner: Annotated[str | None, typer.Option(help="Worker id (default host:pid:random).")] = None,
    batch_window: BatchWindow = None,
    lease_seconds: LeaseSeconds = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    """Process the workspace's deletion-request queue until stopped (SIGINT/SIGTERM)."""
    from obliviate.service.queue import RequestQueue
    from obliviate.service.state import open_workspace
    from obliviate.service.worker import BatchOutcome, Worker

    _logging(verbose)
    settings = _settings(workspace, batch_window_seconds=batch_window, lease_seconds=lease_seconds)
    with open_workspace(settings) as ws:
        runner = Worker(ws, RequestQueue(ws.provenance.engine, settings=settings), owner=owner)

        def report(outcome: BatchOutcome) -> None:
            err_console.print(
                f"{outcome.model}: batch {outcome.batch_id[:8]} completed "
                f"{len(outcome.completed)}, denied {len(outcome.denied)}, failed "
                f"{len(outcome.failed)}, fenced {len(outcome.fenced)}",
                highlight=False,
            )

        runner.on_batch = report
        if drain:
            runner.drain(timeout=float("inf"))
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        err_console.print(f"worker {runner.owner} on {settings.workspace}", highlight=False)
        runner.run(stop=stop)


def _store(workspace: Path) -> Any:
    from obliviate.service.auth import ApiKeyStore
    from obliviate.service.state import open_workspace

    ws = open_workspace(_settings(workspace))
    return ws, ApiKeyStore(ws.provenance.engine)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="admin, audit:read, predict, unlearn:read or unlearn:write (repeatable).",
        ),
    ],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    ws, store = _store(workspace)
    with ws:
        created = store.create(name=name, scopes=scope)
    err_console.print(
        f"created key {created.key.id} ({', '.join(created.key.scopes)}); store it now, it "
        "will not be shown again:",
        highlight=False,
    )
    console.print(created.secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(workspace: WorkspaceOption = DEFAULT_WORKSPACE) -> None:
    """List keys (ids, names, scopes; never secrets)."""
    from obliviate.service._util import iso

    ws, store = _store(workspace)
    with ws:
        keys = store.list()
    table = Table("id", "name", "scopes", "created", "revoked")
    for key in keys:
        table.add_row(
            key.id, key.name, " ".join(key.scopes), iso(key.created_at), iso(key.revoked_at) or ""
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Revoke a key; requests using it get 401 from then on."""
    ws, store = _store(workspace)
    with ws:
        key = store.revoke(key_id)
    console.print(f"revoked {key.id} ({key.name})", highlight=False)
