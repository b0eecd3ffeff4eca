"""Shared CLI plumbing: consoles, the workspace option, progress bars."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from obliviate.strategies.base import ProgressEvent, Strategy
from obliviate.workspace import Workspace

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        envvar="OBLIVIATE_WORKSPACE",
        help="Workspace directory.",
        show_default=True,
    ),
]
DEFAULT_WORKSPACE = Path(os.environ.get("OBLIVIATE_WORKSPACE", ".obliviate"))


def open_workspace(path: Path) -> Workspace:
    """Opens the workspace, turning a missing one into a one-line error (via main)."""
    return Workspace.open(path)


@contextmanager
def progress_bars(strategy: Strategy | None = None) -> Iterator[Progress]:
    """Rich progress bars fed by a strategy's progress events."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def on_event(event: ProgressEvent) -> None:
            if event.task not in tasks:
                tasks[event.task] = progress.add_task(event.task, total=event.total, detail="")
            progress.update(
                tasks[event.task], completed=event.done, total=event.total, detail=event.detail
            )

        if strategy is not None:
            strategy.progress = on_event
        yield progress
        if strategy is not None:
            strategy.progress = None


def datasets_table(ws: Workspace) -> Table:
    """The registered datasets of a workspace, one row each."""
    table = Table("dataset", "active", "deleted", "classes", "shape", "deletable")
    for d in ws.provenance.datasets():
        table.add_row(
            d.name,
            str(d.num_active),
            str(d.num_deleted),
            str(d.num_classes),
            "x".join(map(str, d.feature_shape)),
            "yes" if d.deletable else "no",
        )
    return table
