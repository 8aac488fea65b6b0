"""``nimbus invoke``: run a function once and print what it returned (or, with
``--async`` and ``--dry-run``, queue the call or only check it: see ``invocations``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from nimbus.cli import invocations
from nimbus.cli.context import TokenOption, UrlOption, client_from, echo_json, fail, stderr_console
from nimbus.client import LATEST, Invocation


def invoke(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="Function name, optionally with a qualifier: NAME:prod, NAME:3, NAME:$LATEST.",
            show_default=False,
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="The event as JSON; '-' reads it from stdin."),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="Read the event (JSON) from a file; '-' is stdin."),
    ] = None,
    log_tail: Annotated[
        bool, typer.Option("--log-tail", help="Also print the invocation's logs (on stderr).")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the whole response envelope as JSON.")
    ] = False,
    qualifier: Annotated[
        str | None,
        typer.Option(
            "--qualifier",
            "-q",
            help="What runs: $LATEST (the default), a version number or an alias.",
        ),
    ] = None,
    run_async: Annotated[
        bool,
        typer.Option(
            "--async",
            help="Queue the event and return at once: prints its request id "
            "(follow it with `nimbus invocation show ID`).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Only check that the function (and qualifier) exists and that your key "
            "may invoke it; nothing runs.",
        ),
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Invoke a function synchronously, or queue it with --async. The event defaults to {}.

    The result goes to stdout as JSON; timing, the version that ran, logs and
    errors go to stderr. Exits 1 when the function failed.
    """
    if run_async and dry_run:
        fail("--async and --dry-run cannot be used together")
    if (run_async or dry_run) and (log_tail or raw):
        fail(
            f"{'--async' if run_async else '--dry-run'} returns no result: "
            "--log-tail and --raw go with a synchronous call"
        )
    name, qualifier = split_qualifier(name, qualifier)
    event = read_event(data, file)
    if run_async:
        invocations.submit(ctx, name, qualifier, event, url, token)
        return
    if dry_run:
        invocations.dry_run(ctx, name, qualifier, url, token)
        return
    with client_from(ctx, url, token) as client:
        outcome = client.invoke(name, event, log_tail=log_tail, qualifier=qualifier)
    if raw:
        echo_json(outcome.raw)
    else:
        _report(outcome, qualifier)
    if not outcome.succeeded:
        raise typer.Exit(1)


def split_qualifier(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """``hello:prod`` → ("hello", "prod"); ``--qualifier`` must agree when both are given."""
    base, sep, in_name = name.partition(":")
    if not sep:
        return name, qualifier or None
    if not base or not in_name:
        fail(f"{name!r}: give NAME or NAME:QUALIFIER (a version number or an alias)")
    if qualifier and qualifier != in_name:
        fail(f"{name!r} and --qualifier {qualifier!r} name different qualifiers; give one")
    return base, in_name


def read_event(data: str | None, file: str | None) -> Any:
    """The event from --data, --file or stdin, parsed as JSON (a usage error if it is not)."""
    if data is not None and file is not None:
        fail("give the event with --data or --file, not both")
    if data == "-" or file == "-":
        text, source = sys.stdin.read(), "stdin"
    elif file is not None:
        try:
            text, source = Path(file).read_text(encoding="utf-8"), file
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read --file {file}: {exc}")
    elif data is not None:
        text, source = data, "--data"
    else:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(f"{source} is not valid JSON: {exc}")


def summary_line(outcome: Invocation, qualifier: str | None = None) -> str:
    """``request <id> · 12.3 ms (billed 13 ms) · cold start (init 80.1 ms) · version 4
    (alias prod)``."""
    line = (
        f"request {outcome.request_id} · {outcome.duration_ms:.1f} ms"
        f" (billed {outcome.billed_duration_ms} ms)"
    )
    if outcome.cold_start:
        line += " · cold start"
        if outcome.init_duration_ms is not None:
            line += f" (init {outcome.init_duration_ms:.1f} ms)"
    line += f" · version {outcome.version}"
    if qualifier and not qualifier.isdigit() and qualifier != LATEST:
        line += f" (alias {qualifier})"
    return line


def _report(outcome: Invocation, qualifier: str | None = None) -> None:
    err = stderr_console()
    if outcome.log_tail:
        err.print(Text(outcome.log_tail.rstrip("\n")))
    if outcome.succeeded:
        echo_json(outcome.result)
    elif outcome.error is not None:
        err.print(Text(f"{outcome.error.error_type}: {outcome.error.error_message}", "bold red"))
        for frame in outcome.error.stack_trace:
            err.print(Text(frame.rstrip("\n")))
    else:
        err.print(Text(f"invocation {outcome.status}", "bold red"))
    err.print(Text(summary_line(outcome, qualifier), "dim"))
