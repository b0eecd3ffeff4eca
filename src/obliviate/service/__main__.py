"""``python -m obliviate.service serve|worker|keys``: the service commands on their own.

The same functions are registered on the main ``obliviate`` command; this entry point lets
scripts (and the crash tests) start a server or a worker without the full CLI.
"""

from __future__ import annotations

import typer

from obliviate.cli.service_cmds import keys_app, serve, worker

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("serve")(serve)
app.command("worker")(worker)
app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app(prog_name="obliviate-service")
