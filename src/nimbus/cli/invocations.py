"""Asynchronous invocations: ``nimbus invoke NAME --async | --dry-run`` (the helpers),
``nimbus invocation show`` and ``nimbus dead-letters list | redrive``.

An event sent with ``--async`` is stored by the server and answered at once with its
request id; it runs soon after, is retried with backoff when it fails, and ends up
``succeeded`` or ``failed`` (then in the function's dead letters, from which it can be
re-driven). See docs/async.md.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.text import Text

from nimbus.cli.context import (
    TokenOption,
    UrlOption,
    client_from,
    echo_json,
    fail,
    print_table,
    stderr_console,
)
from nimbus.client import LATEST, AsyncInvocation

invocation_app = typer.Typer(
    name="invocation",
    help="Asynchronous invocations (`nimbus invoke NAME --async`): status and outcome.",
    no_args_is_help=True,
)
dead_letters_app = typer.Typer(
    name="dead-letters",
    help="Asynchronous events that failed their last attempt: list them, re-drive them.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
RequestIdArg = Annotated[
    str,
    typer.Argument(help="The request id `nimbus invoke NAME --async` printed.", show_default=False),
]

#: ``--wait`` polls first after this long, then twice as long each time up to the cap.
POLL_FIRST_S = 0.25
POLL_MAX_S = 2.0
#: Events longer than this are cut in the details view (``--json`` shows them whole).
EVENT_PREVIEW_CHARS = 200
#: Error messages longer than this are cut in the dead letters table.
ERROR_PREVIEW_CHARS = 60

#: A request id: a UUID, as the server gives it (lowercase hex).
_REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smh]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


# ---- nimbus invoke NAME --async | --dry-run ----------------------------------------


def submit(
    ctx: typer.Context,
    name: str,
    qualifier: str | None,
    event: Any,
    url: str | None,
    token: str | None,
) -> None:
    """Queue the event; the request id goes to stdout, how to follow it to stderr."""
    with client_from(ctx, url, token) as client:
        request_id = client.invoke_async(name, event, qualifier=qualifier)
    typer.echo(request_id)
    stderr_console().print(
        Text(
            f"queued for {_target(name, qualifier)} · see it with `nimbus invocation show "
            f"{request_id}` (add --wait to wait for its outcome)",
            "dim",
        )
    )


def dry_run(
    ctx: typer.Context, name: str, qualifier: str | None, url: str | None, token: str | None
) -> None:
    """Ask the server whether the call would be accepted; nothing runs."""
    with client_from(ctx, url, token) as client:
        client.dry_run(name, qualifier=qualifier)
    typer.echo(f"{_target(name, qualifier)} can be invoked with this key (dry run: nothing ran)")


def _target(name: str, qualifier: str | None) -> str:
    return f"{name}:{qualifier}" if qualifier else name


# ---- nimbus invocation show --------------------------------------------------------


@invocation_app.command("show")
def show(
    ctx: typer.Context,
    request_id: RequestIdArg,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", "-w", help="Poll until the invocation has succeeded or failed for good."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="With --wait: give up after this many seconds (exit 1).",
            min=0,
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the invocation as the server sent it.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show an asynchronous invocation: status, attempts, and its result or error.

    Exits 1 when the invocation failed (its last attempt failed, or it got too old),
    and when --wait gives up.
    """
    if timeout is not None and not wait:
        fail("--timeout only goes with --wait")
    request_id = request_id_of(request_id)
    with client_from(ctx, url, token) as client:
        found = client.get_invocation(request_id)
        if wait and not found.done:
            err = stderr_console()
            err.print(Text(f"waiting for {request_id}: {status_line(found, time.time())}", "dim"))
            found = wait_until_done(
                lambda: client.get_invocation(request_id),
                found,
                timeout_s=timeout,
                sleep=time.sleep,
                clock=time.monotonic,
                on_change=lambda seen: err.print(Text(status_line(seen, time.time()), "dim")),
            )
    if as_json:
        echo_json(found.raw or asdict(found))
    else:
        typer.echo("\n".join(invocation_details(found, time.time())))
    if wait and not found.done:
        fail(f"gave up waiting after {timeout or 0:g} s: the invocation is still {found.status}", 1)
    if found.status == "failed":
        raise typer.Exit(1)


def wait_until_done(
    fetch: Callable[[], AsyncInvocation],
    current: AsyncInvocation,
    *,
    timeout_s: float | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    on_change: Callable[[AsyncInvocation], None] | None = None,
) -> AsyncInvocation:
    """Poll ``fetch`` until the invocation is done, or ``timeout_s`` (None: no limit) has
    passed on ``clock``; returns the last state seen. Polls quickly at first, then every
    ``POLL_MAX_S``. ``on_change`` hears each new status or attempt."""
    deadline = None if timeout_s is None else clock() + timeout_s
    interval = POLL_FIRST_S
    while not current.done:
        pause = interval
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                break
            pause = min(pause, left)
        sleep(pause)
        interval = min(interval * 2, POLL_MAX_S)
        latest = fetch()
        if on_change is not None and (latest.status, latest.attempts) != (
            current.status,
            current.attempts,
        ):
            on_change(latest)
        current = latest
    return current


def status_line(inv: AsyncInvocation, now: float) -> str:
    """``queued · attempt 1 of 3 failed (RuntimeError) · next attempt in 4.2 s``, and the
    like for the other statuses."""
    if inv.status == "queued":
        line = "queued"
        if inv.attempts > 0:
            failed = f" ({inv.error.error_type})" if inv.error is not None else ""
            line += f" · attempt {inv.attempts} of {inv.max_attempts} failed{failed}"
        if inv.next_attempt_at is not None and inv.next_attempt_at > now:
            line += f" · next attempt in {inv.next_attempt_at - now:.1f} s"
        return line
    if inv.status == "running":
        return f"running · attempt {inv.attempts} of {inv.max_attempts}"
    if inv.status == "succeeded":
        return f"succeeded · attempt {inv.attempts} of {inv.max_attempts}"
    if inv.status == "failed":
        reason = f" ({inv.dead_reason})" if inv.dead_reason else ""
        return f"failed after {_plural(inv.attempts, 'attempt')}{reason}"
    return inv.status


def invocation_details(inv: AsyncInvocation, now: float) -> list[str]:
    """``key  value`` lines; a multi-line value (result, stack trace) continues under its
    first line."""
    rows: list[tuple[str, str]] = [
        ("request id", inv.request_id),
        ("function", _target(inv.function_name, inv.qualifier)),
        ("status", inv.status + (f" ({inv.dead_reason})" if inv.dead_reason else "")),
        ("attempts", f"{inv.attempts} of {inv.max_attempts}"),
        ("created", _when(inv.created_at)),
    ]
    if inv.finished_at is not None:
        rows.append(("finished", _when(inv.finished_at)))
    if inv.status == "queued" and inv.next_attempt_at is not None:
        wait_s = max(0.0, inv.next_attempt_at - now)
        rows.append(("next attempt", f"{_when(inv.next_attempt_at)} (in {wait_s:.1f} s)"))
    rows.append(("event", _preview(inv.event)))
    if inv.succeeded:
        rows.append(("result", json.dumps(inv.result, indent=2, ensure_ascii=False)))
    if inv.error is not None:
        # Kept through retries: after a success it is an earlier attempt's failure.
        key = "error" if not inv.succeeded else "earlier error"
        error = f"{inv.error.error_type}: {inv.error.error_message}"
        frames = [line for frame in inv.error.stack_trace for line in frame.rstrip().split("\n")]
        rows.append((key, "\n".join([error, *frames])))
    width = max(len(key) for key, _ in rows) + 2
    lines = []
    for key, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{key:<{width}}{first}")
        lines.extend(" " * width + more for more in rest)
    return lines


# ---- nimbus dead-letters -------------------------------------------------------------


@dead_letters_app.command("list")
def list_dead_letters(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", help="At most this many, oldest first.", min=1, max=1000),
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List a function's dead letters: asynchronous events that failed for good."""
    with client_from(ctx, url, token) as client:
        found = client.list_dead_letters(name, limit)
    if as_json:
        echo_json([d.raw or asdict(d) for d in found])
        return
    if not found:
        stderr_console().print(f"{name} has no dead letters", style="dim")
        return
    columns = ("REQUEST ID", "QUALIFIER", "ATTEMPTS", "REASON", "ERROR", "FAILED")
    rows = [
        (
            d.request_id,
            d.qualifier or LATEST,
            f"{d.attempts}/{d.max_attempts}",
            d.dead_reason or "-",
            _error_preview(d),
            _when(d.finished_at),
        )
        for d in found
    ]
    print_table(columns, rows)
    if len(found) == limit:
        stderr_console().print(
            f"showing the {limit} oldest; there may be more (--limit N, at most 1000)",
            style="dim",
        )


@dead_letters_app.command("redrive")
def redrive(
    ctx: typer.Context,
    name: NameArg,
    ids: Annotated[
        list[str] | None,
        typer.Option(
            "--id",
            metavar="REQUEST_ID",
            help="Only this dead letter (repeatable). Default: the oldest ones.",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            help="Without --id: at most this many, oldest first (default 1000).",
            min=1,
            max=10_000,
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Queue dead letters again: each runs anew, with all its attempts and the same
    request id. Fix the function first, or they fail the same way again."""
    if ids and limit is not None:
        fail("--id and --limit cannot be used together (--limit picks the oldest ones)")
    ids = [request_id_of(i, "--id ") for i in ids or ()]
    with client_from(ctx, url, token) as client:
        if ids:
            count = client.redrive(name, ids)
        else:
            count = client.redrive(name, limit=limit if limit is not None else 1000)
    typer.echo(f"re-queued {_plural(count, 'dead letter')} of {name}")
    err = stderr_console()
    wanted = len(set(ids))
    if wanted > count:
        err.print(
            f"{wanted - count} of the given ids were not dead letters of {name} (already "
            "re-driven, not failed, or not found); see `nimbus dead-letters list "
            f"{name}`",
            style="yellow",
        )
    if count:
        err.print("follow one with `nimbus invocation show REQUEST_ID --wait`", style="dim")


def request_id_of(text: str, option: str = "") -> str:
    """A request id as the server spells it (lowercase); a usage error when it is none."""
    request_id = text.strip().lower()
    if not _REQUEST_ID.match(request_id):
        fail(
            f"{option}{text!r} is not a request id: give the id `nimbus invoke NAME --async` "
            "printed, like 6f1c0a2e-4b1d-4c8e-9a51-0d2e7f3b9c14"
        )
    return request_id


# ---- settings of deploy / update ---------------------------------------------------


def parse_max_age(text: str) -> int:
    """``--async-max-age``: whole seconds (``3600``) or a duration (``90m``, ``6h``)."""
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(
            f"{text!r} is neither whole seconds (3600) nor a duration (90m, 6h)",
            param_hint="--async-max-age",
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def format_max_age(seconds: int) -> str:
    """``21600 s (6 h)``, ``5400 s (90 min)``, ``75 s``."""
    if seconds % 3600 == 0:
        return f"{seconds} s ({seconds // 3600} h)"
    if seconds % 60 == 0:
        return f"{seconds} s ({seconds // 60} min)"
    return f"{seconds} s"


# ---- formatting ----------------------------------------------------------------------


def _when(ts: float | None) -> str:
    """Local time, to the second; ``-`` when unknown."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > EVENT_PREVIEW_CHARS:
        return text[:EVENT_PREVIEW_CHARS] + f"… ({len(text)} chars; --json shows it whole)"
    return text


def _error_preview(inv: AsyncInvocation) -> str:
    if inv.error is None:
        return "-"
    text = f"{inv.error.error_type}: {inv.error.error_message}".split("\n", 1)[0]
    return text if len(text) <= ERROR_PREVIEW_CHARS else text[: ERROR_PREVIEW_CHARS - 1] + "…"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
