"""`obliviate data register|list|show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from obliviate.cli._common import (
    DEFAULT_WORKSPACE,
    WorkspaceOption,
    console,
    datasets_table,
    open_workspace,
)
from obliviate.data import DATASETS, load_dataset, load_file
from obliviate.data.sample_set import SampleSet

app = typer.Typer(help="Register and inspect datasets.", no_args_is_help=True)


def load_source(
    source: str,
    *,
    split: str,
    data_dir: Path | None,
    id_column: str,
    label_column: str,
    subject_column: str | None,
    limit: int | None,
) -> SampleSet:
    """A SampleSet from a catalogue name (``mnist``) or a file (.csv, .parquet, .npz)."""
    path = Path(source)
    samples: SampleSet
    if source in DATASETS:
        samples = load_dataset(source, split=split, data_dir=data_dir)
    else:
        kwargs: dict[str, Any] = {}
        if path.suffix.lower() in (".csv", ".parquet"):
            kwargs = {
                "id_column": id_column,
                "label_column": label_column,
                "subject_column": subject_column,
            }
        samples = load_file(path, **kwargs)
    if limit is not None:
        samples = samples.subset(np.arange(min(limit, len(samples))))
    return samples


@app.command("register")
def register(
    source: Annotated[
        str, typer.Argument(help="A catalogue dataset (mnist, digits, ...) or a data file.")
    ],
    dataset: Annotated[
        str | None, typer.Option(help="Name to register under (default: the source's name).")
    ] = None,
    split: Annotated[str, typer.Option(help="Catalogue split.")] = "train",
    data_dir: Annotated[
        Path | None, typer.Option(help="Where catalogue files live (OBLIVIATE_DATA_DIR).")
    ] = None,
    id_column: Annotated[str, typer.Option(help="Sample-id column of CSV/Parquet.")] = "sample_id",
    label_column: Annotated[str, typer.Option(help="Label column of CSV/Parquet.")] = "label",
    subject_column: Annotated[
        str | None, typer.Option(help="Data-subject column of CSV/Parquet.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Register only the first N rows.")] = None,
    non_deletable: Annotated[
        bool, typer.Option("--non-deletable", help="Declare the data public: never deleted.")
    ] = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Register samples with stable ids (one transaction: all or nothing)."""
    samples = load_source(
        source,
        split=split,
        data_dir=data_dir,
        id_column=id_column,
        label_column=label_column,
        subject_column=subject_column,
        limit=limit,
    )
    with open_workspace(workspace) as ws:
        record = ws.register(samples, dataset=dataset, deletable=not non_deletable)
    console.print(
        f"Registered {len(samples)} samples into [bold]{record.name}[/bold] "
        f"({record.num_active} active, {record.num_classes} classes)."
    )


@app.command("list")
def list_datasets(workspace: WorkspaceOption = DEFAULT_WORKSPACE) -> None:
    """List registered datasets."""
    with open_workspace(workspace) as ws:
        console.print(datasets_table(ws))


@app.command("show")
def show(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Show a dataset: counts, subjects, class balance, deletions."""
    with open_workspace(workspace) as ws:
        record = ws.provenance.dataset(dataset)
        table = ws.provenance.samples(dataset=dataset, status=None)
        active = table.status == "active"
        subjects = {s for s in table.subject_ids[active].tolist() if s}
        console.print(f"[bold]{record.name}[/bold]")
        console.print(f"  samples: {record.num_active} active, {record.num_deleted} deleted")
        console.print(f"  subjects: {len(subjects)}")
        console.print(f"  feature shape: {tuple(record.feature_shape)}")
        console.print(f"  deletable: {'yes' if record.deletable else 'no'}")
        counts = np.bincount(table.labels[active], minlength=record.num_classes)
        console.print("  class counts: " + ", ".join(f"{i}:{c}" for i, c in enumerate(counts)))
        deletions = ws.provenance.deletions(dataset=dataset)
        console.print(f"  deletion requests: {len(deletions)}")
