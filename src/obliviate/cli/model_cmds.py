"""`obliviate train|forget|predict|versions|verify`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import tomllib
import typer
from rich.table import Table

from obliviate.cli._common import (
    DEFAULT_WORKSPACE,
    WorkspaceOption,
    console,
    open_workspace,
    progress_bars,
)
from obliviate.cli.data_cmds import load_source
from obliviate.errors import ConfigError, DataError
from obliviate.strategies import STRATEGIES
from obliviate.training import TrainConfig

if TYPE_CHECKING:
    from obliviate.strategies.base import ForgetResult


def read_config_file(path: Path) -> dict[str, Any]:
    """A strategy config from JSON or TOML (keys as in the config dataclass)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}.") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:]}: {exc}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object at the top level.")
    return data


def train(
    name: Annotated[str, typer.Option(help="Name of the new model.")],
    dataset: Annotated[str, typer.Option(help="Registered dataset to train on.")],
    strategy: Annotated[str, typer.Option(help="Strategy: sisa or retrain.")] = "sisa",
    config: Annotated[
        Path | None,
        typer.Option(help='JSON/TOML config; `model = "pkg.mod:factory"` for your own model.'),
    ] = None,
    shards: Annotated[int | None, typer.Option(help="SISA shards (S).")] = None,
    slices: Annotated[int | None, typer.Option(help="SISA slices per shard (R).")] = None,
    sharding: Annotated[
        str | None, typer.Option(help="uniform, by_subject or class_balanced.")
    ] = None,
    aggregation: Annotated[str | None, typer.Option(help="vote, weighted_vote, mean_prob.")] = None,
    model: Annotated[str | None, typer.Option(help="Zoo model or pkg.module:function.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per component.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Root seed.")] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Train a model that can forget."""
    cls = STRATEGIES.get(strategy)
    data = read_config_file(config) if config is not None else {}
    overrides = {
        "shards": shards,
        "slices": slices,
        "sharding": sharding,
        "aggregation": aggregation,
        "model": model,
        "seed": seed,
    }
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    train_data = dict(data.get("train", {}))
    train_overrides: dict[str, float | int | None] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
    }
    for train_key, train_value in train_overrides.items():
        if train_value is not None:
            train_data[train_key] = train_value
    data["train"] = TrainConfig.from_dict(train_data).to_dict()
    strategy_config = cls.config_class.from_dict(data)
    with open_workspace(workspace) as ws:
        start = time.perf_counter()
        instance = ws.create(name=name, dataset=dataset, strategy=strategy, config=strategy_config)
        with progress_bars(instance):
            result = instance.fit()
        console.print(
            f"Trained [bold]{name}[/bold] ({strategy}) on {result.samples} samples in "
            f"{time.perf_counter() - start:.1f}s: version {result.version}, "
            f"{len(result.components)} components."
        )


def _read_ids(values: list[str], ids_file: Path | None) -> list[str]:
    ids = list(values)
    if ids_file is not None:
        try:
            ids += [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"cannot read ids file {ids_file}: {exc.strerror}.") from None
    return ids


def forget(
    model: Annotated[str, typer.Option(help="Model to forget from.")],
    sample: Annotated[
        list[str] | None, typer.Option("--sample", help="A sample id (repeatable).")
    ] = None,
    subject: Annotated[
        list[str] | None, typer.Option("--subject", help="A data-subject id (repeatable).")
    ] = None,
    ids_file: Annotated[Path | None, typer.Option(help="File with one sample id per line.")] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded with the deletion).")] = "",
    method: Annotated[
        str | None,
        typer.Option(
            help="An approximate unlearning method (see `obliviate methods`) instead of the "
            "strategy's exact path: fast, labelled approximate."
        ),
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Forget samples or data subjects: exact rollback now, then retraining."""
    sample_ids = _read_ids(sample or [], ids_file)
    with open_workspace(workspace) as ws:
        instance = ws.model(model)
        with progress_bars(instance):
            result = instance.forget(
                sample_ids=sample_ids, subject_ids=subject or [], reason=reason, method=method
            )
        receipt = ws.auditor.receipt_path(result.request_id) if result.receipt else None
        others = ws.models_holding_deleted(
            dataset=ws.provenance.model(model).dataset, exclude=model
        )
    _report_forget(model, result, receipt)
    if others:
        held = ", ".join(f"{name} ({len(ids)})" for name, ids in sorted(others.items()))
        console.print(
            f"[yellow]Other models of this dataset still serve deleted samples:[/yellow] {held}. "
            "Deletion is per dataset: forget them there too (`obliviate verify <model>` lists "
            "them; the service does this itself).",
            soft_wrap=True,
        )


def _report_forget(model: str, result: ForgetResult, receipt: Path | None) -> None:
    receipt_line = (
        f"  receipt: {receipt} (check it with `obliviate audit verify-receipt`)" if receipt else ""
    )
    if result.noop:
        console.print(
            f"Nothing to forget: {len(result.already_deleted_ids)} id(s) were already deleted "
            f"by earlier requests; version {result.version} unchanged."
        )
        if receipt_line:
            console.print(receipt_line, soft_wrap=True)
        return
    if result.method is not None:
        console.print(
            f"Forgot {len(result.forgotten_sample_ids)} sample(s) from [bold]{model}[/bold] "
            f"([yellow]approximate: {result.method}[/yellow]); version {result.version} active "
            f"after {result.seconds:.2f}s; updated {', '.join(result.affected_components)}."
        )
        console.print(
            "  their influence was reduced, not removed: `obliviate verify` keeps reporting "
            "them until an exact forget of this model."
        )
        if receipt_line:
            console.print(receipt_line, soft_wrap=True)
        return
    console.print(
        f"Forgot {len(result.forgotten_sample_ids)} sample(s) from [bold]{model}[/bold] "
        f"([green]{result.guarantee.value}[/green])."
    )
    console.print(
        f"  exact rolled-back version {result.rolled_back_version} active after "
        f"{result.rollback_seconds * 1000:.0f} ms"
    )
    slices = ", ".join(f"{c} from slice {s}" for c, s in result.earliest_slices.items())
    console.print(f"  retrained: {slices or 'nothing'}")
    console.print(
        f"  version {result.version} active; {result.samples_retrained} samples, "
        f"{result.sample_passes} sample-passes, {result.seconds:.2f}s in all"
    )
    if result.already_deleted_ids:
        console.print(f"  already deleted earlier: {len(result.already_deleted_ids)} id(s)")
    if receipt_line:
        console.print(receipt_line, soft_wrap=True)


def predict(
    model: Annotated[str, typer.Option(help="Model to predict with.")],
    source: Annotated[
        str, typer.Argument(help="A data file (.npz/.csv/.parquet) or a catalogue dataset.")
    ],
    split: Annotated[str, typer.Option(help="Catalogue split.")] = "test",
    data_dir: Annotated[Path | None, typer.Option(help="Catalogue data folder.")] = None,
    version: Annotated[int | None, typer.Option(help="Model version (default: active).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write predictions as CSV.")] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Predict with the served version; reports accuracy when labels are known."""
    samples = load_source(
        source,
        split=split,
        data_dir=data_dir,
        id_column="sample_id",
        label_column="label",
        subject_column=None,
        limit=limit,
    )
    with open_workspace(workspace) as ws:
        start = time.perf_counter()
        prediction = ws.model(model).predict(samples.features, version=version)
        seconds = time.perf_counter() - start
    accuracy = float(np.mean(prediction.labels == samples.labels))
    console.print(
        f"Predicted {len(samples)} samples with {model} v{prediction.version} "
        f"({prediction.components_used}/{prediction.components_total} components"
        f"{', degraded' if prediction.degraded else ''}) in {seconds:.2f}s; "
        f"accuracy {accuracy:.2%}"
    )
    if output is not None:
        lines = ["sample_id,prediction,label"] + [
            f"{i},{p},{y}"
            for i, p, y in zip(
                samples.sample_ids.tolist(),
                prediction.labels.tolist(),
                samples.labels.tolist(),
                strict=True,
            )
        ]
        output.write_text("\n".join(lines) + "\n")
        console.print(f"Wrote {output}")


def versions(
    model: Annotated[str, typer.Option(help="Model name.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """List a model's versions: kind, status and components."""
    with open_workspace(workspace) as ws:
        table = Table("version", "kind", "status", "components", "excluded", "content hash")
        for v in ws.provenance.versions(model):
            excluded = sum(1 for c in v.components.values() if c is None)
            table.add_row(
                str(v.number),
                v.kind,
                v.status,
                str(len(v.components)),
                str(excluded),
                v.content_hash[:16],
            )
        console.print(table)


def verify(
    target: Annotated[str, typer.Argument(help="MODEL (its active version) or MODEL@VERSION.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Check that no component of a model version has seen a deleted sample."""
    name, _, number = target.partition("@")
    if number and not number.isdigit():
        raise ConfigError(f"VERSION must be a number, as in {name}@3; got {number!r}.")
    with open_workspace(workspace) as ws:
        report = ws.verify(model=name, version=int(number) if number else None)
        approximate = any(v.kind == "approximate" for v in ws.provenance.versions(name))
    if report.ok:
        console.print(
            f"[green]OK[/green] {report.model} v{report.version}: no component has seen a "
            "deleted sample."
        )
        return
    console.print(
        f"[red]FAILED[/red] {report.model} v{report.version}: "
        f"{len(report.deleted_seen)} deleted sample(s) in its lineage"
    )
    if approximate:
        console.print(
            "  (some were forgotten approximately: their influence was reduced, not removed; "
            "an exact forget of this model removes them for good)"
        )
    for component, ids in report.components_with_deleted.items():
        console.print(f"  {component}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    raise typer.Exit(code=2)


def methods() -> None:
    """List the strategies and approximate unlearning methods, with their guarantee."""
    from obliviate.strategies.approximate import METHODS

    table = Table("name", "guarantee", "how to use it", "paper")
    for name, cls in STRATEGIES.items():
        table.add_row(name, cls.guarantee.value, f"train --strategy {name}", "")
    for name, method in METHODS.items():
        table.add_row(
            name, method.guarantee.value, f"forget --method {name}", getattr(method, "paper", "")
        )
    console.print(table)
