"""``nimbus concurrency set | delete`` and ``nimbus provisioned set | list | delete``.

Reserved concurrency caps a function's concurrent instances, all its versions
together (0 disables the function). Provisioned instances are kept initialised
for a version or an alias (split over its versions by weight), so their calls
start warm.
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
    fail,
    print_table,
    stderr_console,
)
from nimbus.client import LATEST, Provisioned

concurrency_app = typer.Typer(
    name="concurrency",
    help="Reserved concurrency: cap a function's concurrent instances (0 disables it).",
    no_args_is_help=True,
)
provisioned_app = typer.Typer(
    name="provisioned",
    help="Provisioned instances: keep instances of a version or alias initialised.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
QualifierArg = Annotated[
    str,
    typer.Argument(
        help="A version number or an alias (not $LATEST, which changes with every deploy).",
        show_default=False,
    ),
]


# ---- reserved concurrency ------------------------------------------------------------


@concurrency_app.command("set")
def set_concurrency(
    ctx: typer.Context,
    name: NameArg,
    reserved: Annotated[
        int,
        typer.Argument(
            help="Most instances of the function at once, all versions together; 0 disables it.",
            min=0,
            show_default=False,
        ),
    ],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Reserve (cap) a function's concurrent instances; 0 disables the function."""
    with client_from(ctx, url, token) as client:
        value = client.set_concurrency(name, reserved)
    if value == 0:
        typer.echo(f"{name} is disabled (reserved concurrency 0): every call answers 429")
        stderr_console().print(
            f"enable it again with `nimbus concurrency delete {name}` or "
            f"`nimbus concurrency set {name} N`",
            style="dim",
        )
        return
    typer.echo(f"{name} · reserved concurrency {value}")


@concurrency_app.command("delete")
def delete_concurrency(
    ctx: typer.Context, name: NameArg, url: UrlOption = None, token: TokenOption = None
) -> None:
    """Remove a function's reserved concurrency (enabling it again if it was 0)."""
    with client_from(ctx, url, token) as client:
        client.delete_concurrency(name)
    typer.echo(f"{name} · no reserved concurrency")


# ---- provisioned instances -------------------------------------------------------------


@provisioned_app.command("set")
def set_provisioned(
    ctx: typer.Context,
    name: NameArg,
    qualifier: QualifierArg,
    count: Annotated[
        int,
        typer.Argument(help="Instances kept initialised; 0 removes the setting.", min=0),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the setting as JSON.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Keep COUNT instances of a version or an alias initialised at all times.

    The instances start in the background: `nimbus provisioned list NAME` shows
    how many are ready.
    """
    if qualifier == LATEST:
        fail(
            f"provisioned instances are set on a version or an alias, not on {LATEST} "
            f"(which changes with every deploy); publish a version with `nimbus publish {name}`"
        )
    with client_from(ctx, url, token) as client:
        status = client.set_provisioned(name, qualifier, count)
    if as_json:
        echo_json(asdict(status))
        return
    if count == 0:
        typer.echo(f"removed provisioned instances of {name}:{qualifier}")
        return
    typer.echo(
        f"{name}:{status.qualifier} · {status.requested} provisioned · {status.ready} ready now"
    )


@provisioned_app.command("list")
def list_provisioned(
    ctx: typer.Context,
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List provisioned instances: requested per qualifier, wanted and ready per version."""
    with client_from(ctx, url, token) as client:
        found = client.list_provisioned(name)
    if as_json:
        echo_json([asdict(p) for p in found])
        return
    if not found:
        stderr_console().print(
            f"{name} has no provisioned instances; add some with "
            f"`nimbus provisioned set {name} QUALIFIER N`",
            style="dim",
        )
        return
    rows = [row for p in found for row in provisioned_rows(p)]
    print_table(("QUALIFIER", "REQUESTED", "VERSION", "WANTED", "READY"), rows)


@provisioned_app.command("delete")
def delete_provisioned(
    ctx: typer.Context,
    name: NameArg,
    qualifier: QualifierArg,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Stop keeping instances of a version or alias initialised."""
    with client_from(ctx, url, token) as client:
        client.delete_provisioned(name, qualifier)
    typer.echo(f"removed provisioned instances of {name}:{qualifier}")


def provisioned_rows(p: Provisioned) -> list[tuple[str, ...]]:
    """One row per version the qualifier runs (an alias may run two)."""
    if not p.versions:
        return [(p.qualifier, str(p.requested), "-", "0", str(p.ready))]
    ordered = sorted(p.versions.items(), key=lambda item: (len(item[0]), item[0]))
    return [
        (p.qualifier, str(p.requested), version, str(v.wanted), str(v.ready))
        for version, v in ordered
    ]
