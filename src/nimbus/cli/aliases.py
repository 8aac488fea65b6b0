"""``nimbus alias set | list | show | delete``: names for versions, with weighted routing.

``nimbus alias set hello prod 3 --weight 4=10`` points ``prod`` at version 3
and sends 10 % of its calls to version 4 (a canary); the server stores the
share as a weight between 0 and 1.
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
from nimbus.client import LATEST, Alias

app = typer.Typer(
    name="alias",
    help="Aliases (prod, canary): names that point to a version, optionally splitting calls "
    "with a second one.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
AliasArg = Annotated[str, typer.Argument(help="Alias name, e.g. prod.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

_WEIGHT_FORM = "OTHER=PERCENT, e.g. 4=10 (10 % of calls go to version 4)"


def parse_weights(pairs: list[str], main_version: int) -> dict[int, float]:
    """``["4=10"]`` → ``{4: 0.1}``: percent of calls per other version, as a 0..1 weight."""
    weights: dict[int, float] = {}
    for pair in pairs:
        version_text, sep, percent_text = pair.partition("=")
        version_text, percent_text = version_text.strip(), percent_text.strip()
        if not sep or not version_text or not percent_text:
            fail(f"--weight {pair!r} must look like {_WEIGHT_FORM}")
        if not version_text.isdigit() or int(version_text) < 1:
            fail(f"--weight {pair!r}: {version_text!r} is not a version number (1, 2, ...)")
        version = int(version_text)
        try:
            percent = float(percent_text.removesuffix("%"))
        except ValueError:
            fail(f"--weight {pair!r}: {percent_text!r} is not a percentage; {_WEIGHT_FORM}")
        if not 0.0 < percent < 100.0:
            fail(
                f"--weight {pair!r}: the percentage must be above 0 and below 100 "
                f"(the rest of the calls go to version {main_version})"
            )
        if version == main_version:
            fail(
                f"--weight {pair!r}: version {version} is the alias's main version, which gets "
                "the calls the weights leave; give the weight to another version"
            )
        if version in weights:
            fail(f"--weight gives version {version} a share twice; give it once")
        weights[version] = round(percent / 100.0, 6)
    if sum(weights.values()) >= 1.0:
        fail(f"the --weight shares add up to 100 % or more; version {main_version} needs a share")
    return weights


@app.command("set")
def set_alias(
    ctx: typer.Context,
    name: NameArg,
    alias: AliasArg,
    version: Annotated[
        int,
        typer.Argument(help="The version it points to (see `nimbus versions NAME`).", min=1),
    ],
    weight: Annotated[
        list[str] | None,
        typer.Option(
            "--weight",
            "-w",
            metavar="OTHER=PERCENT",
            help="Send PERCENT % of the alias's calls to version OTHER, the rest to VERSION; "
            "e.g. 4=10. Without it every call goes to VERSION.",
        ),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option("--description", help="Free text (default: keep the alias's current one)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the alias as JSON.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create an alias, or move it, atomically: each call runs the old or the new target.

    The routing given replaces the alias's whole routing: without --weight, a
    weight it had is removed.
    """
    if alias.isdigit() or alias == LATEST:
        fail(f"{alias!r} cannot name an alias: numbers and {LATEST} name versions (e.g. prod)")
    weights = parse_weights(weight or [], version)
    with client_from(ctx, url, token) as client:
        if description is None:
            current = client.find_alias(name, alias)
            description = current.description if current is not None else ""
        stored, created = client.put_alias(name, alias, version, weights, description)
    if as_json:
        echo_json(asdict(stored))
        return
    verb = "created" if created else "moved"
    typer.echo(f"{verb} alias {stored.function}:{stored.name} → {routing(stored)}")


@app.command("list")
def list_aliases(
    ctx: typer.Context,
    name: NameArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List a function's aliases and where they route calls."""
    with client_from(ctx, url, token) as client:
        aliases = client.list_aliases(name)
    if as_json:
        echo_json([asdict(a) for a in aliases])
        return
    if not aliases:
        stderr_console().print(
            f"{name} has no aliases; create one with `nimbus alias set {name} ALIAS VERSION`",
            style="dim",
        )
        return
    rows = [
        (a.name, str(a.version), routing(a), a.description or "-", _time(a.updated_at))
        for a in aliases
    ]
    print_table(("ALIAS", "VERSION", "ROUTING", "DESCRIPTION", "UPDATED"), rows)


@app.command("show")
def show(
    ctx: typer.Context,
    name: NameArg,
    alias: AliasArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one alias."""
    with client_from(ctx, url, token) as client:
        found = client.get_alias(name, alias)
    if as_json:
        echo_json(asdict(found))
        return
    rows = [
        ("alias", f"{found.function}:{found.name}"),
        ("version", str(found.version)),
        ("routing", routing(found)),
        ("description", found.description or "-"),
        ("revision", str(found.revision)),
        ("created", _time(found.created_at)),
        ("updated", _time(found.updated_at)),
    ]
    width = max(len(k) for k, _ in rows) + 2
    typer.echo("\n".join(f"{k:<{width}}{v}" for k, v in rows))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    alias: AliasArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete an alias and the provisioned instances set on it (asks first unless --yes).
    Calls naming it fail from then on."""
    if not yes:
        typer.confirm(f"Delete alias {alias!r} of {name!r}?", abort=True, err=True)
    with client_from(ctx, url, token) as client:
        client.delete_alias(name, alias)
    typer.echo(f"deleted alias {name}:{alias}")


def routing(alias: Alias) -> str:
    """``version 3`` or ``version 3 (90 %) · version 4 (10 %)``."""
    if not alias.weights:
        return f"version {alias.version}"
    return " · ".join(
        f"version {version} ({_percent(share)} %)" for version, share in alias.routing.items()
    )


def _percent(share: float) -> str:
    return f"{round(share * 100, 4):g}"


def _time(value: str | None) -> str:
    return (value or "-")[:19].replace("T", " ")
