"""``nimbus key create | list | revoke``: API keys and their roles.

The namespace is ``--namespace`` (on the command or before it, or
``NIMBUS_NAMESPACE``); without it a key is made in the namespace the caller
acts in, and an admin lists the keys of every namespace.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from nimbus.cli.context import (
    NamespaceOption,
    TokenOption,
    UrlOption,
    client_from,
    echo_json,
    global_options,
    print_table,
    stderr_console,
)

app = typer.Typer(
    name="key",
    help="API keys: create (the secret is shown once), list, revoke.",
    no_args_is_help=True,
)

ROLES = ("admin", "developer", "invoker")


@app.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="admin (everything), developer (manage + invoke + logs in its namespace) "
            "or invoker (invoke only).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str, typer.Option("--name", help="What the key is for, e.g. ci-deploy.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the new key as JSON.")] = False,
    namespace: NamespaceOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create a key in the namespace given by --namespace (default: the one you act in).

    The secret is printed once, on stdout; it cannot be shown again.
    """
    if role not in ROLES:
        raise typer.BadParameter(f"choose one of: {', '.join(ROLES)}", param_hint="--role")
    namespace = namespace or global_options(ctx).namespace
    with client_from(ctx, url, token) as client:
        key = client.create_key(role=role, name=name, namespace=namespace)
    stderr_console().print(
        "This is the only time the secret is shown: store it now (e.g. in a secret manager).",
        style="yellow",
    )
    if as_json:
        echo_json(asdict(key))
        return
    stderr_console().print(
        f"created {key.role} key {key.id} ({key.name}) in namespace {key.namespace}", style="dim"
    )
    if key.access_key_id:
        typer.echo(
            "AWS credentials of this key, for the Lambda API (docs/lambda-api.md):\n"
            f"  AWS_ACCESS_KEY_ID={key.access_key_id}\n"
            f"  AWS_SECRET_ACCESS_KEY={key.secret_access_key}",
            err=True,
        )
    typer.echo(key.secret)


@app.command("list")
def list_keys(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    namespace: NamespaceOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List live keys (never their secrets): admin keys see all unless --namespace is given."""
    with client_from(ctx, url, token) as client:
        keys = client.list_keys(namespace or global_options(ctx).namespace)
    if as_json:
        echo_json([asdict(k) for k in keys])
        return
    rows = [
        (k.id, k.namespace, k.role, k.name, (k.created_at or "")[:19].replace("T", " "))
        for k in keys
    ]
    print_table(("ID", "NAMESPACE", "ROLE", "NAME", "CREATED"), rows)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Key id (see `nimbus key list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Revoke a key: calls with it are refused (401) from now on."""
    if not yes:
        typer.confirm(f"Revoke key {key_id!r}?", abort=True, err=True)
    with client_from(ctx, url, token) as client:
        client.revoke_key(key_id)
    typer.echo(f"revoked key {key_id}")
