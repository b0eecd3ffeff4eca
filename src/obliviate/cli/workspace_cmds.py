"""`obliviate workspace init|info`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from obliviate.cli._common import (
    DEFAULT_WORKSPACE,
    WorkspaceOption,
    console,
    datasets_table,
    open_workspace,
)
from obliviate.workspace import Workspace

app = typer.Typer(help="Create and inspect workspaces.", no_args_is_help=True)


@app.command("init")
def init(
    path: Annotated[Path, typer.Argument(help="Directory to create.")] = DEFAULT_WORKSPACE,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: SQLite file inside).")
    ] = None,
    storage_url: Annotated[
        str | None, typer.Option(help="fsspec URL for checkpoints (default: local folder).")
    ] = None,
) -> None:
    """Create a workspace: registry database, checkpoint store, feature store."""
    with Workspace.init(path, database_url=database_url, storage_url=storage_url) as ws:
        console.print(f"Initialised workspace at [bold]{ws.root}[/bold]")
        console.print(f"  database: {ws.database_url}")
        console.print(f"  checkpoints: {ws.storage_url}")


@app.command("info")
def info(workspace: WorkspaceOption = DEFAULT_WORKSPACE) -> None:
    """Show datasets, models and their active versions."""
    with open_workspace(workspace) as ws:
        console.print(f"Workspace [bold]{ws.root}[/bold]  database: {ws.database_url}")
        console.print(datasets_table(ws))
        models = Table("model", "strategy", "dataset", "active version", "kind")
        for m in ws.provenance.models():
            active = ws.provenance.active_version(m.name)
            models.add_row(
                m.name,
                m.strategy,
                m.dataset,
                "-" if active is None else str(active.number),
                "-" if active is None else active.kind,
            )
        console.print(models)
