"""``nimbus audit``: who changed what (admin keys only)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import datetime
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
from nimbus.cli.logs import parse_since


def audit(
    ctx: typer.Context,
    action: Annotated[
        str | None,
        typer.Option("--action", "-a", help="Only this action, e.g. function.delete, key.create."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", "-s", help="Only entries from this long ago (300, 15m, 2h, 1d) or ISO time."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="At most this many entries.", min=1)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    namespace: NamespaceOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show the audit trail, newest first: every management action that changed something.

    Every namespace's entries, or one namespace's with --namespace.
    """
    since_ts = parse_since(since, time.time()) if since is not None else None
    with client_from(ctx, url, token) as client:
        entries = client.audit(
            namespace=namespace or global_options(ctx).namespace,
            action=action,
            since=since_ts,
            limit=limit,
        )
    if as_json:
        echo_json([asdict(e) for e in entries])
        return
    if not entries:
        stderr_console().print("no audit entries match", style="dim")
        return
    rows = [
        (
            _local(e.ts),
            e.namespace,
            e.action,
            e.target,
            f"{e.key_name} ({e.key_id}, {e.role})",
            json.dumps(e.details, sort_keys=True),
        )
        for e in entries
    ]
    print_table(("TIME", "NAMESPACE", "ACTION", "TARGET", "BY", "DETAILS"), rows)


def _local(ts: str) -> str:
    try:
        return datetime.fromisoformat(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return ts
