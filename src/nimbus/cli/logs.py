"""``nimbus logs``: a function's log lines, optionally followed as they arrive."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Annotated

import typer

from nimbus.cli.context import TokenOption, UrlOption, client_from, fail
from nimbus.client import LogLine

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
    request_id: Annotated[
        str | None, typer.Option("--request-id", "-r", help="Only the lines of this invocation.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            "-s",
            help="Only lines from this long ago (seconds, or 90s/15m/2h/1d) "
            "or from an ISO 8601 time (local time unless it has an offset).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="At most this many lines.", min=1)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print a function's logs: time, request id, stream (stdout/stderr/platform), message."""
    since_ts = parse_since(since, time.time()) if since is not None else None
    with client_from(ctx, url, token) as client:
        if not follow:
            for line in client.get_logs(name, request_id=request_id, since=since_ts, limit=limit):
                typer.echo(format_line(line))
            return
        lines = client.follow_logs(name, request_id=request_id, since=since_ts, limit=limit)
        try:
            for line in lines:
                typer.echo(format_line(line))
        except KeyboardInterrupt:
            pass  # Ctrl-C is how --follow ends
        finally:
            lines.close()


def parse_since(text: str, now: float) -> float:
    """Epoch seconds for ``--since``: seconds ago, a duration like ``15m``, or ISO 8601."""
    seconds_ago: float | None
    try:
        seconds_ago = float(text)
    except ValueError:
        match = _DURATION.match(text)
        seconds_ago = float(match.group(1)) * _UNIT_S[match.group(2)] if match else None
    if seconds_ago is not None:
        if not math.isfinite(seconds_ago) or seconds_ago < 0:
            fail(f"--since {text!r}: give a positive number of seconds")
        return now - seconds_ago
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        fail(
            f"--since {text!r} is neither seconds ago (300), a duration (15m, 2h, 1d) "
            "nor an ISO 8601 time (2024-05-01T12:00:00)"
        )


def format_line(line: LogLine) -> str:
    """``2024-05-01 12:00:00.123 <request id> stdout   <message>`` (local time)."""
    stamp = datetime.fromtimestamp(line.ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    message = line.message.rstrip("\r\n")
    return f"{stamp} {line.request_id or '-'} {line.stream:<8} {message}"
