"""``nimbus publish``, ``nimbus versions`` and ``nimbus version list | show | delete``.

A version is an immutable snapshot of a function's ``$LATEST`` code and
settings, numbered 1, 2, ...; aliases (``nimbus alias``) point at versions.
``nimbus versions NAME`` is short for ``nimbus version list NAME``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from nimbus.cli.context import (
    TokenOption,
    UrlOption,
    client_from,
    echo_json,
    print_table,
    stderr_console,
)
from nimbus.cli.functions import function_details
from nimbus.client import Function

app = typer.Typer(
    name="version",
    help="Published versions of a function: list, show, delete. Publish with `nimbus publish`.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
NumberArg = Annotated[
    int, typer.Argument(help="Version number (see `nimbus versions NAME`).", min=1)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

#: Hex digits of the code's SHA-256 shown in tables.
SHORT_SHA = 12


def publish(
    ctx: typer.Context,
    name: NameArg,
    description: Annotated[
        str | None,
        typer.Option("--description", help="The version's description (default: the function's)."),
    ] = None,
    prewarm: Annotated[
        bool, typer.Option("--prewarm", help="Start one instance of the version now.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the version as JSON, with `created`.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Publish the function's $LATEST code and settings as a new immutable version.

    When a version already has exactly these code and settings, that version is
    the answer and nothing new is published (--description is then not applied).
    """
    with client_from(ctx, url, token) as client:
        version, created = client.publish_version(name, description, prewarm)
    if as_json:
        echo_json({**asdict(version), "created": created})
        return
    warm = " · prewarming one instance" if prewarm else ""
    if created:
        typer.echo(f"published {version.name} version {version.version} (new){warm}")
    else:
        typer.echo(
            f"{version.name} version {version.version} already has this code and these "
            f"settings (not new){warm}"
        )


@app.command("list")
def list_versions(
    ctx: typer.Context,
    name: NameArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List a function's published versions, oldest first."""
    with client_from(ctx, url, token) as client:
        versions = client.list_versions(name)
    if as_json:
        echo_json([asdict(v) for v in versions])
        return
    if not versions:
        stderr_console().print(
            f"{name} has no versions yet; publish one with `nimbus publish {name}`", style="dim"
        )
        return
    columns = ("VERSION", "CODE", "MEMORY", "TIMEOUT", "DESCRIPTION", "CREATED")
    print_table(columns, [_row(v) for v in versions])


@app.command("show")
def show(
    ctx: typer.Context,
    name: NameArg,
    number: NumberArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one version's code and settings."""
    with client_from(ctx, url, token) as client:
        version = client.get_version(name, number)
    if as_json:
        echo_json(asdict(version))
        return
    typer.echo("\n".join(function_details(version)))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    number: NumberArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a version (asks first unless --yes). Refused while an alias or
    provisioned instances point to it."""
    if not yes:
        typer.confirm(f"Delete version {number} of {name!r}?", abort=True, err=True)
    with client_from(ctx, url, token) as client:
        client.delete_version(name, number)
    typer.echo(f"deleted {name} version {number}")


def _row(v: Function) -> tuple[str, ...]:
    return (
        v.version,
        v.code_sha256[:SHORT_SHA],
        f"{v.memory_mb} MB",
        f"{v.timeout_s:g} s",
        v.description or "-",
        (v.created_at or "")[:19].replace("T", " "),
    )
