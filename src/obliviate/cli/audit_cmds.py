"""`obliviate audit verify|verify-receipt|checkpoint|keys rotate|keys export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli._common import DEFAULT_WORKSPACE, WorkspaceOption, console, open_workspace
from obliviate.ledger import VerificationError, VerifierKey, verify_receipt
from obliviate.ledger.errors import LedgerError

app = typer.Typer(help="Check and sign the tamper-evident audit log.", no_args_is_help=True)
keys_app = typer.Typer(help="The log's signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _fail(message: str) -> None:
    console.print(f"[red]FAILED[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LedgerError(f"cannot read {what} {path}: {exc.strerror}.") from None


def _keys_from(paths: list[Path]) -> list[VerifierKey]:
    keys: list[VerifierKey] = []
    for path in paths:
        for line in _read_text(path, "public-key file").splitlines():
            if line.strip() and not line.startswith("#"):
                keys.append(VerifierKey.parse(line))
    return keys


@app.command("verify")
def verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint saved earlier: the log must still contain it."),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option("--public-key", help="Trust only these vkey files (default: workspace)."),
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Recompute the whole log and check every signed checkpoint (and a saved one)."""
    against = _read_text(checkpoint, "checkpoint file") if checkpoint is not None else None
    keys = _keys_from(public_key) if public_key else None
    with open_workspace(workspace) as ws:
        try:
            report = ws.ledger.verify(against=against, keys=keys)
        except VerificationError as exc:
            _fail(str(exc))
            return
    console.print(
        f"[green]OK[/green] {report.origin}: {report.size} leaves, "
        f"{report.checkpoints} signed checkpoint(s) verified in {report.seconds:.2f}s",
        highlight=False,
    )
    console.print(f"  root {report.root.hex()}", highlight=False)
    if report.against_size is not None:
        console.print(
            f"  consistent with the saved checkpoint of size {report.against_size}",
            highlight=False,
        )


@app.command("verify-receipt")
def verify_receipt_cmd(
    file: Annotated[Path, typer.Argument(help="A receipt JSON file.")],
    public_key: Annotated[
        list[Path] | None,
        typer.Option("--public-key", help="vkey file(s) of the log to trust (repeatable)."),
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", help="Trust this workspace's public keys (read offline)."
        ),
    ] = None,
) -> None:
    """Check a deletion receipt offline: signatures, leaf hash, inclusion proof."""
    try:
        receipt = json.loads(_read_text(file, "receipt"))
    except json.JSONDecodeError as exc:
        _fail(f"{file} is not JSON: {exc}")
        return
    keys = _keys_from(public_key or [])
    if workspace is not None:
        keys += _keys_from(sorted((workspace / "ledger" / "keys").glob("*.vkey")))
        if not keys:
            raise LedgerError(f"no public keys found in {workspace / 'ledger' / 'keys'}.")
    try:
        check = verify_receipt(receipt, keys=keys or None)
    except VerificationError as exc:
        _fail(f"{file}: {exc}")
        return
    console.print(
        f"[green]OK[/green] receipt for request {check.request_id} ({check.guarantee}): "
        f"leaf {check.leaf_index} of a log of {check.tree_size}, signed by "
        f"{check.key.name}+{check.key.key_hash}",
        highlight=False,
        soft_wrap=True,
    )
    if not check.pinned:
        console.print(
            "  [yellow]warning:[/yellow] checked against the key inside the receipt only; pass "
            "--public-key (or -w) to confirm who signed it.",
            highlight=False,
        )


@app.command("checkpoint")
def checkpoint(
    out: Annotated[Path | None, typer.Option(help="Also save the signed checkpoint here.")] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Print (and save) a signed checkpoint of the log as it is now."""
    with open_workspace(workspace) as ws:
        signed = ws.ledger.checkpoint()
    if out is not None:
        out.write_text(signed.note, encoding="utf-8")
    typer.echo(signed.note, nl=False)


@keys_app.command("rotate")
def rotate(workspace: WorkspaceOption = DEFAULT_WORKSPACE) -> None:
    """Replace the signing key (the old public key stays for verification)."""
    with open_workspace(workspace) as ws:
        key = ws.ledger.rotate_key()
    console.print(f"New signing key {key.name}+{key.key_hash}", highlight=False)
    typer.echo(key.vkey)


@keys_app.command("export")
def export(
    out: Annotated[Path | None, typer.Option(help="Write the keys to this file.")] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Print every public key of the log (vkey format), oldest first, active last."""
    with open_workspace(workspace) as ws:
        text = "".join(k.vkey + "\n" for k in ws.ledger.public_keys())
    if out is not None:
        out.write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)
