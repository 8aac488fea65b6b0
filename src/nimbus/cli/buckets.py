"""``nimbus bucket create | list | show | delete``: the object storage's buckets.

Objects are read and written with S3 clients (boto3, ``aws s3``) at
``$NIMBUS_URL/s3`` with a key's access key pair; see docs/object-storage.md.
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
from nimbus.cli.functions import format_bytes
from nimbus.client import Bucket

app = typer.Typer(
    name="bucket",
    help="Object storage buckets (objects: any S3 client at $NIMBUS_URL/s3).",
    no_args_is_help=True,
)

NameArg = Annotated[
    str,
    typer.Argument(
        help="Bucket name: 3-63 lower-case letters, digits, '.' and '-'; unique on the server.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create a bucket in the namespace."""
    with client_from(ctx, url, token) as client:
        bucket = client.create_bucket(name)
    if as_json:
        echo_json(asdict(bucket))
        return
    typer.echo(f"created bucket {bucket.name} in namespace {bucket.namespace}")
    stderr_console().print(
        f"S3 clients reach it as s3://{bucket.name} at {bucket.endpoint} "
        "(e.g. `aws --endpoint-url ... s3 cp FILE s3://...`, see docs/object-storage.md)",
        style="dim",
        markup=False,
    )


@app.command("list")
def list_buckets(
    ctx: typer.Context, as_json: JsonOpt = False, url: UrlOption = None, token: TokenOption = None
) -> None:
    """List the namespace's buckets, with their objects and bytes."""
    with client_from(ctx, url, token) as client:
        found = client.list_buckets()
    if as_json:
        echo_json([asdict(b) for b in found])
        return
    if not found:
        stderr_console().print(
            "no buckets; create one with `nimbus bucket create NAME`", style="dim", markup=False
        )
        return
    print_table(("BUCKET", "OBJECTS", "SIZE", "CREATED"), [_row(b) for b in found])


@app.command("show")
def show(
    ctx: typer.Context,
    name: NameArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one bucket."""
    with client_from(ctx, url, token) as client:
        bucket = client.get_bucket(name)
    if as_json:
        echo_json(asdict(bucket))
        return
    rows = [
        ("bucket", bucket.name),
        ("namespace", bucket.namespace),
        ("objects", str(bucket.objects)),
        ("size", format_bytes(bucket.bytes)),
        ("created", (bucket.created_at or "-")[:19].replace("T", " ")),
        ("endpoint", f"{bucket.endpoint} (s3://{bucket.name})"),
    ]
    width = max(len(k) for k, _ in rows) + 2
    typer.echo("\n".join(f"{k:<{width}}{v}" for k, v in rows))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete an empty bucket (asks first unless --yes)."""
    if not yes:
        typer.confirm(f"Delete bucket {name!r}?", abort=True, err=True)
    with client_from(ctx, url, token) as client:
        client.delete_bucket(name)
    typer.echo(f"deleted bucket {name}")


def _row(b: Bucket) -> tuple[str, ...]:
    return (
        b.name,
        str(b.objects),
        format_bytes(b.bytes),
        (b.created_at or "-")[:19].replace("T", " "),
    )
