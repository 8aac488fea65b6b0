"""``nimbus serve``, kept apart from the other commands: the console script runs it
without importing the CLI's client side (HTTP client, tables, every other command),
which would add a tenth of a second to every start of the server."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (NIMBUS_HOST; default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (NIMBUS_PORT; default 8080).")
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            help="Where metadata, code and logs are kept (NIMBUS_DATA_DIR; default .nimbus).",
        ),
    ] = None,
    sandbox: Annotated[
        str | None,
        typer.Option(
            "--sandbox",
            help="Instance launcher: auto (default: namespaces, refusing to run without "
            "isolation), namespaces, or process (no isolation; development only). "
            "NIMBUS_SANDBOX.",
        ),
    ] = None,
) -> None:
    """Run the Nimbus server (gateway, workers, store) with embedded defaults.

    NIMBUS_ADMIN_TOKEN presets the admin API key; other NIMBUS_* variables set
    the remaining settings.
    """
    # Imported here so that every other command starts without loading the server.
    from nimbus.config import Settings
    from nimbus.errors import InvalidSettingError

    try:
        settings = Settings.from_mapping(
            os.environ, host=host, port=port, data_dir=data_dir, sandbox=sandbox
        )
    except InvalidSettingError as exc:
        typer.secho(f"error: {exc.message}", err=True, fg="red")
        raise typer.Exit(2) from exc
    # Through importlib: typed as Any, so mypy is fine before nimbus.server exists.
    server = importlib.import_module("nimbus.server")
    server.serve_forever(settings)


def run(args: list[str]) -> None:
    """Run ``nimbus serve ARGS`` as its own one-command program."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve)
    app(args=args, prog_name="nimbus serve")


def main() -> None:
    """Entry point of the ``nimbus`` console script: ``serve`` straight away, anything
    else through the whole CLI (:mod:`nimbus.cli.main`)."""
    if sys.argv[1:2] == ["serve"]:
        run(sys.argv[2:])
        return
    from nimbus.cli.main import main as cli_main

    cli_main()
