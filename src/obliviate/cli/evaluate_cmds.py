"""`obliviate evaluate` and `obliviate audit gold-standard`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from obliviate.cli._common import DEFAULT_WORKSPACE, WorkspaceOption, console, open_workspace
from obliviate.errors import ConfigError
from obliviate.evaluation import (
    DEFAULT_ATTACKS,
    EvalData,
    GoldStandardTolerances,
    ensure_reference,
    from_strategy,
    load_eval_npz,
    run_gold_standard_audit,
    workspace_data,
    write_report,
)
from obliviate.evaluation import (
    evaluate as run_evaluation,
)
from obliviate.workspace import Workspace


def _load_split(ws: Workspace, source: str, *, what: str) -> EvalData:
    """An ``.npz`` file (features, labels) or a registered dataset's active samples."""
    path = Path(source)
    if path.suffix.lower() == ".npz":
        if not path.exists():
            raise ConfigError(f"--{what}: no such file {path}.")
        return load_eval_npz(path)
    return workspace_data(workspace=ws, dataset=source)


def evaluate(
    model: Annotated[str, typer.Option(help="The model to evaluate (its active version).")],
    test: Annotated[str, typer.Option(help="Test set: a registered dataset or an .npz file.")],
    forget: Annotated[
        Path | None,
        typer.Option(help="Forgotten samples as .npz (features, labels), for research use."),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Reference model name; default: the cached gold standard (the model's own "
            "strategy and config, fitted without the deleted samples)."
        ),
    ] = None,
    gold: Annotated[
        bool, typer.Option(help="Train/reuse the gold-standard reference if none is named.")
    ] = True,
    attacks: Annotated[
        str | None, typer.Option(help="Comma-separated attack names (default: all cheap ones).")
    ] = None,
    retain_limit: Annotated[
        int | None, typer.Option(help="Evaluate retain metrics on at most this many samples.")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Evaluation seed.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Report directory (default: <workspace>/reports).")
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Measure what a forget did: UA/RA/TA and MIAs against a retrained reference."""
    with open_workspace(workspace) as ws:
        record = ws.provenance.model(model)
        test_data = _load_split(ws, test, what="test")
        forget_data = load_eval_npz(forget) if forget is not None else None
        retain = workspace_data(workspace=ws, dataset=record.dataset, limit=retain_limit, seed=seed)
        if attacks is None:
            names = list(DEFAULT_ATTACKS) if forget_data is not None else ["svc_training_privacy"]
        else:
            names = [a.strip() for a in attacks.split(",") if a.strip()]
        served = ws.model(model)
        ref_fn = None
        ref_name = reference
        if reference is not None:
            ref_fn = from_strategy(ws.model(reference))
        elif gold:
            with console.status("training or loading the gold-standard reference"):
                gold_ref = ensure_reference(workspace=ws, model=model)
            ref_fn, ref_name = from_strategy(gold_ref.strategy), gold_ref.name
        report = run_evaluation(
            model=from_strategy(served),
            reference=ref_fn,
            forget=forget_data,
            retain=retain,
            test=test_data,
            attacks=names,
            seed=seed,
        )
        table = Table("metric", "value", "reference", "abs. gap", "good", title=f"{model}")
        for m in report.metrics:
            ref = "-" if m.reference is None else f"{m.reference:.2f}"
            gap = "-" if m.gap is None else f"{m.gap:.2f}"
            table.add_row(m.name, f"{m.value:.2f}", ref, gap, m.good)
        if report.avg_gap is not None:
            table.add_row("Avg. Gap", f"{report.avg_gap:.2f}", "0", "-", "lower")
        console.print(table)
        paths = write_report(
            reports={model: [report]},
            out_dir=out if out is not None else ws.root / "reports",
            title=f"Evaluation of {model}",
            notes=[f"Reference: {ref_name or 'none'}; evaluation seed {seed}."],
            stem=f"evaluate-{model}",
        )
        console.print(f"report: {paths.markdown} and {paths.html}")


def gold_standard(
    model: Annotated[str, typer.Option(help="The served model to audit.")],
    test: Annotated[str, typer.Option(help="Test set: a registered dataset or an .npz file.")],
    ra: Annotated[float, typer.Option(help="Tolerance on |RA gap| (points).")] = 2.0,
    ta: Annotated[float, typer.Option(help="Tolerance on |TA gap| (points).")] = 2.0,
    mia: Annotated[float, typer.Option(help="Tolerance on the retain-vs-test MIA gap.")] = 5.0,
    retain_limit: Annotated[
        int | None, typer.Option(help="Evaluate on at most this many active samples.")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Evaluation seed.")] = 0,
    reference_strategy: Annotated[
        str | None,
        typer.Option(
            help="Reference: default the model's own strategy and config (an exact model "
            "must match it with every gap 0); 'retrain' for one retrained model."
        ),
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Retrain the reference for the forgets since the last audit and check the served model.

    Exits 2 when a metric is outside its tolerance.
    """
    tolerances = GoldStandardTolerances(ra=ra, ta=ta, mia=mia, retain_limit=retain_limit)
    with open_workspace(workspace) as ws:
        test_data = _load_split(ws, test, what="test")
        with console.status("retraining or loading the gold-standard reference"):
            outcome = run_gold_standard_audit(
                workspace=ws,
                model=model,
                test=test_data,
                tolerances=tolerances,
                seed=seed,
                reference_strategy=reference_strategy,
            )
    table = Table("metric", "served", "reference", "abs. gap", "tolerance", "ok")
    for c in outcome.checks:
        table.add_row(
            c.metric,
            f"{c.served:.2f}",
            f"{c.reference:.2f}",
            f"{c.gap:.2f}",
            f"{c.tolerance:.2f}",
            "yes" if c.ok else "[red]BREACH[/red]",
        )
    console.print(table)
    console.print(
        f"reference {outcome.reference_model} "
        f"({'trained' if outcome.reference_created else 'reused'}); "
        f"forgets covered: {list(outcome.deletion_ids) or 'none new'}; record: {outcome.path}"
    )
    if not outcome.ok:
        for c in outcome.breaches:
            console.print(
                f"[red]breach:[/red] {c.metric} gap {c.gap:.2f} > tolerance {c.tolerance:.2f} "
                f"(served {c.served:.2f}, reference {c.reference:.2f})"
            )
        raise typer.Exit(code=2)
