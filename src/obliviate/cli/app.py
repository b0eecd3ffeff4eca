"""The `obliviate` command: a thin layer over the library.

Errors raised on purpose (ObliviateError) print one clear line and exit 1; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from obliviate.cli import (
    audit_cmds,
    data_cmds,
    demo,
    evaluate_cmds,
    model_cmds,
    service_cmds,
    workspace_cmds,
)
from obliviate.cli._common import err_console
from obliviate.errors import ObliviateError

app = typer.Typer(
    name="obliviate",
    help="Make trained PyTorch models forget — exactly where possible.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(workspace_cmds.app, name="workspace")
app.add_typer(data_cmds.app, name="data")
app.command("train")(model_cmds.train)
app.command("forget")(model_cmds.forget)
app.command("predict")(model_cmds.predict)
app.command("versions")(model_cmds.versions)
app.command("verify")(model_cmds.verify)
app.command("methods")(model_cmds.methods)
app.command("evaluate")(evaluate_cmds.evaluate)
audit_cmds.app.command("gold-standard")(evaluate_cmds.gold_standard)
app.add_typer(audit_cmds.app, name="audit")
app.command("serve")(service_cmds.serve)
app.command("worker")(service_cmds.worker)
app.add_typer(service_cmds.keys_app, name="keys")
app.command("demo")(demo.demo)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="obliviate")
    except ObliviateError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
