"""``nimbus login``: check an API key against a server and remember both."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from nimbus.cli import context
from nimbus.cli.context import GlobalOptions, Target, fail
from nimbus.client import ApiError


def login(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help=f"Server URL. Else NIMBUS_URL, else the saved one, else {context.DEFAULT_URL}.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="API key; asked for (hidden) when not given.", show_default=False
        ),
    ] = None,
) -> None:
    """Verify an API key (GET /v1/functions) and save the URL and key for later commands.

    The config file is $NIMBUS_CONFIG, else $XDG_CONFIG_HOME/nimbus/config.json,
    else ~/.config/nimbus/config.json, written with mode 0600.
    """
    options = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    server = context.resolve_url(url or options.url, os.environ)
    key = token or options.token or typer.prompt("API key", hide_input=True, err=True)
    with context.make_client(Target(server, key)) as client:
        try:
            functions: int | None = len(client.list_functions())
        except ApiError as exc:
            if exc.status == 403 and exc.code == "Auth.Forbidden":
                functions = None  # a valid key whose role may only invoke
            elif exc.status in (401, 403):
                fail(f"{server} rejected this key ({exc.code}: {exc.message}); nothing saved", 1)
            else:
                raise
    path = context.config_path(os.environ)
    context.save_config(path, server, key)
    if functions is None:
        typer.echo(f"key verified with {server} (an invoker key: it may only invoke functions)")
    else:
        typer.echo(f"key verified with {server} (GET /v1/functions: {functions} functions)")
    typer.echo(f"saved to {path} (mode 0600)")
