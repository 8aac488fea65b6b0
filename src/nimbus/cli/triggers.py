"""``nimbus trigger add-timer | add-url | add-redis | add-object | list | show | enable |
disable | delete``.

A trigger connects an event source to a function (or to one of its versions or
aliases): a ``timer`` fires on a schedule, as an asynchronous invocation; an
``http`` trigger gives the function a URL whose requests invoke it; a
``redis-stream`` trigger consumes a Redis stream in batches. See docs/triggers.md.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

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
from nimbus.client import LATEST, Trigger

app = typer.Typer(
    name="trigger",
    help="Triggers: run a function on a schedule (timers) or give it a URL (http).",
    no_args_is_help=True,
)

#: As the server checks it.
TRIGGER_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def _trigger_name(value: str) -> str:
    if not TRIGGER_NAME_RE.match(value):
        raise typer.BadParameter(
            f"{value!r} is not a trigger name: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter"
        )
    return value


NameArg = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
TriggerArg = Annotated[
    str,
    typer.Argument(
        help="Trigger name: 1-64 letters, digits, '-' or '_', starting with a letter; "
        "unique per function.",
        show_default=False,
        callback=_trigger_name,
    ),
]
QualifierOpt = Annotated[
    str | None,
    typer.Option(
        "--qualifier",
        "-q",
        help="The version number or alias it invokes (default: $LATEST).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

#: Payloads longer than this are cut in ``show`` (``--json`` shows them whole).
PAYLOAD_PREVIEW_CHARS = 200


class CatchUp(StrEnum):
    """What a timer does with ticks missed while the server was down."""

    latest = "latest"
    all = "all"
    none = "none"


class Flavour(StrEnum):
    LAMBDA = "lambda"
    SCF = "scf"


FlavourOpt = Annotated[
    Flavour | None,
    typer.Option(
        "--flavour",
        help="Whose event shapes the function gets: lambda (AWS's; the default) or scf "
        "(Tencent SCF's).",
        show_default=False,
    ),
]


DisabledOpt = Annotated[
    bool,
    typer.Option("--disabled", help="Create it disabled (enable it with `nimbus trigger enable`)."),
]


@app.command("add-timer")
def add_timer(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule",
            "-s",
            help="Cron (`0 9 * * *`; 6 fields with the seconds first: `*/10 * * * * *`) "
            "or `rate(5 minutes)`.",
            show_default=False,
        ),
    ],
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            "--tz",
            help="IANA time zone the cron expression is read in, e.g. Asia/Shanghai "
            "(default: UTC).",
            show_default=False,
        ),
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            "-p",
            metavar="JSON|@FILE",
            help="JSON sent as the event's `detail` (default {}); @FILE reads it from a file, "
            "@- from stdin.",
            show_default=False,
        ),
    ] = None,
    catch_up: Annotated[
        CatchUp | None,
        typer.Option(
            "--catch-up",
            help="Ticks missed while the server was down: latest (fire the newest once; the "
            "default), all (each of them), none (skip them).",
            show_default=False,
        ),
    ] = None,
    qualifier: QualifierOpt = None,
    flavour: FlavourOpt = None,
    disabled: DisabledOpt = False,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Run a function on a schedule: each tick is an asynchronous invocation.

    The event is EventBridge's "Scheduled Event" with the payload as `detail`.
    The server checks the schedule and the time zone, and says what to write
    instead when it does not accept them.
    """
    config: dict[str, Any] = {"schedule": schedule}
    if timezone is not None:
        config["timezone"] = timezone
    if payload is not None:
        config["payload"] = parse_payload(payload)
    if catch_up is not None:
        config["catch_up"] = catch_up.value
    if flavour is not None:
        config["flavour"] = flavour.value
    with client_from(ctx, url, token) as client:
        created = client.create_trigger(
            name, trigger, "timer", config, qualifier=qualifier, enabled=not disabled
        )
    if as_json:
        echo_json(asdict(created))
        return
    typer.echo(
        f"created timer trigger {_label(created)} · {schedule_text(created)} · "
        f"catch-up {created.config.get('catch_up', 'latest')} → {_target(created)}"
    )
    if not created.enabled:
        _disabled_hint(created)


@app.command("add-url")
def add_url(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    public: Annotated[
        bool,
        typer.Option(
            "--public/--key",
            help="--public: anyone may call the URL. --key (the default): callers send "
            "`Authorization: Bearer KEY` with a key that may invoke in the namespace.",
        ),
    ] = False,
    qualifier: QualifierOpt = None,
    flavour: FlavourOpt = None,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Give a function a URL (printed on stdout); each request to it invokes the function.

    Any method and any path below the URL: the request is a payload 2.0 event, and
    the function's result is the HTTP answer.
    """
    auth = "public" if public else "key"
    config: dict[str, Any] = {"auth": auth}
    if flavour is not None:
        config["flavour"] = flavour.value
    with client_from(ctx, url, token) as client:
        created = client.create_trigger(name, trigger, "http", config, qualifier=qualifier)
    if as_json:
        echo_json(asdict(created))
        return
    typer.echo(created.url or "-")
    who = (
        "anyone may call it"
        if auth == "public"
        else "callers send `Authorization: Bearer KEY` with a key that may invoke here"
    )
    stderr_console().print(
        f"created http trigger {_label(created)} → {_target(created)} · auth {auth}: {who}",
        style="dim",
        markup=False,
    )


@app.command("add-redis")
def add_redis(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    redis_url: Annotated[
        str,
        typer.Option(
            "--url",
            help="The Redis server: redis://host:port/db, with user:password@ before the host "
            "if it asks for them (rediss:// for TLS). A password is stored sealed and never "
            "shown.",
            show_default=False,
        ),
    ],
    stream: Annotated[
        str, typer.Option("--stream", help="The stream's key, e.g. orders.", show_default=False)
    ],
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Consumer group (default: nimbus-FUNCTION); created when missing.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Entries per invocation, 1-1000 (default 10).", show_default=False
        ),
    ] = None,
    batch_window_ms: Annotated[
        int | None,
        typer.Option(
            "--batch-window-ms",
            help="How long to wait to fill a batch, 0-10000 ms (default 0: invoke with what "
            "is there).",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="$|0",
            help="Where a new group begins: $ (entries added from now on; the default) or 0 "
            "(every entry already in the stream).",
            show_default=False,
        ),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(
            "--max-attempts",
            help="Attempts per entry before it moves to the STREAM:dead stream, 1-100 (default 5).",
            show_default=False,
        ),
    ] = None,
    qualifier: QualifierOpt = None,
    disabled: DisabledOpt = False,
    as_json: JsonOpt = False,
    token: TokenOption = None,
) -> None:
    """Consume a Redis stream: each batch of entries is one synchronous invocation.

    The event is {"Records": [...]}, one record per entry. Entries are acked when the
    function succeeds (all, or those not named in its `batchItemFailures`), retried
    with backoff when it fails, and moved to STREAM:dead after --max-attempts.
    (--url names the Redis server; give Nimbus's before the command, `nimbus --url
    http://... trigger add-redis ...`, or in NIMBUS_URL.)
    """
    if start is not None and start not in ("$", "0"):
        fail("--start is $ (entries added from now on) or 0 (every entry in the stream)")
    config: dict[str, Any] = {"url": redis_url, "stream": stream}
    for key, value in (
        ("group", group),
        ("batch_size", batch_size),
        ("batch_window_ms", batch_window_ms),
        ("start", start),
        ("max_attempts", max_attempts),
    ):
        if value is not None:
            config[key] = value
    # --url is Redis's here: the server comes from `nimbus --url ...`, NIMBUS_URL or login.
    with client_from(ctx, None, token) as client:
        created = client.create_trigger(
            name, trigger, "redis-stream", config, qualifier=qualifier, enabled=not disabled
        )
    if as_json:
        echo_json(asdict(created))
        return
    c = created.config
    typer.echo(
        f"created redis-stream trigger {_label(created)} · {c.get('url', '?')} stream "
        f"{c.get('stream', '?')} group {c.get('group', '?')} · batch {c.get('batch_size', '?')} "
        f"· {c.get('max_attempts', '?')} attempts → {_target(created)}"
    )
    if not created.enabled:
        _disabled_hint(created)


@app.command("add-object")
def add_object(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    bucket: Annotated[
        str,
        typer.Option(
            "--bucket",
            "-b",
            help="The bucket whose objects fire it (of this namespace; create it first, e.g. "
            "`nimbus bucket create NAME`).",
            show_default=False,
        ),
    ],
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help="An event that fires it, repeatable: s3:ObjectCreated:* (the default), "
            "s3:ObjectRemoved:*, or one of s3:ObjectCreated:Put|Copy|CompleteMultipartUpload, "
            "s3:ObjectRemoved:Delete.",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix", help="Only keys that start with this, e.g. uploads/.", show_default=False
        ),
    ] = None,
    suffix: Annotated[
        str | None,
        typer.Option(
            "--suffix", help="Only keys that end with this, e.g. .jpg.", show_default=False
        ),
    ] = None,
    qualifier: QualifierOpt = None,
    flavour: FlavourOpt = None,
    disabled: DisabledOpt = False,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Run a function on object storage events: each matching put, copy, completed
    multipart upload or delete in the bucket is one asynchronous invocation.

    The event is S3's event notification ({"Records": [...]}), as Lambda functions get
    it from S3. See docs/object-storage.md.
    """
    config: dict[str, Any] = {"bucket": bucket}
    if flavour is not None:
        config["flavour"] = flavour.value
    if events:
        config["events"] = list(events)
    if prefix is not None:
        config["prefix"] = prefix
    if suffix is not None:
        config["suffix"] = suffix
    with client_from(ctx, url, token) as client:
        created = client.create_trigger(
            name, trigger, "object", config, qualifier=qualifier, enabled=not disabled
        )
    if as_json:
        echo_json(asdict(created))
        return
    typer.echo(
        f"created object trigger {_label(created)} · {object_text(created)} → {_target(created)}"
    )
    if not created.enabled:
        _disabled_hint(created)


def object_text(t: Trigger) -> str:
    """``photos uploads/*.jpg · s3:ObjectCreated:*`` for an object trigger."""
    c = t.config
    keys = f"{c.get('prefix') or ''}*{c.get('suffix') or ''}"
    return f"{c.get('bucket', '?')} {keys} · {', '.join(c.get('events') or ['s3:ObjectCreated:*'])}"


@app.command("list")
def list_triggers(
    ctx: typer.Context,
    name: NameArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List a function's triggers, with when each timer last fired and each URL."""
    with client_from(ctx, url, token) as client:
        found = client.list_triggers(name)
    if as_json:
        echo_json([asdict(t) for t in found])
        return
    if not found:
        stderr_console().print(
            f"{name} has no triggers; add one with `nimbus trigger add-timer {name} TRIGGER "
            f"--schedule EXPR` or `nimbus trigger add-url {name} TRIGGER`",
            style="dim",
            markup=False,
        )
        return
    columns = ("TRIGGER", "TYPE", "QUALIFIER", "ENABLED", "SCHEDULE/AUTH", "LAST FIRED/URL")
    print_table(columns, [trigger_row(t) for t in found])


@app.command("show")
def show(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one trigger and its settings."""
    with client_from(ctx, url, token) as client:
        found = client.get_trigger(name, trigger)
    if as_json:
        echo_json(asdict(found))
        return
    typer.echo("\n".join(trigger_details(found)))


@app.command("enable")
def enable(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Enable a trigger: a timer fires again, an http trigger's URL answers again."""
    with client_from(ctx, url, token) as client:
        found = client.set_trigger_enabled(name, trigger, True)
    typer.echo(f"enabled {found.type} trigger {_label(found)}")


@app.command("disable")
def disable(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Disable a trigger, keeping its settings: a timer stops firing, a URL answers 404."""
    with client_from(ctx, url, token) as client:
        found = client.set_trigger_enabled(name, trigger, False)
    typer.echo(f"disabled {found.type} trigger {_label(found)}")
    _disabled_hint(found)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    trigger: TriggerArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a trigger (asks first unless --yes). `nimbus trigger disable` keeps it."""
    if not yes:
        typer.confirm(f"Delete trigger {trigger!r} of {name!r}?", abort=True, err=True)
    with client_from(ctx, url, token) as client:
        client.delete_trigger(name, trigger)
    typer.echo(f"deleted trigger {name}/{trigger}")


# ---- helpers ---------------------------------------------------------------------------


def parse_payload(text: str) -> Any:
    """``--payload``: JSON, ``@FILE`` (JSON read from a file) or ``@-`` (from stdin); a
    usage error when it cannot be read or is not JSON."""
    if text.startswith("@"):
        path = text[1:]
        if not path:
            fail("--payload @FILE needs a file name after '@' (or @- for stdin)")
        if path == "-":
            body, source = sys.stdin.read(), "--payload @- (stdin)"
        else:
            try:
                body = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                fail(f"cannot read --payload {text}: {exc}")
            source = f"--payload {text}"
    else:
        body, source = text, "--payload"
    try:
        return json.loads(body)
    except ValueError as exc:
        hint = "" if text.startswith("@") else " (quote it for the shell, or use @FILE)"
        fail(f"{source} is not valid JSON: {exc}{hint}")


def schedule_text(t: Trigger) -> str:
    """``0 9 * * * (Asia/Shanghai)`` for a timer, ``auth key`` for an http trigger."""
    if t.type == "timer":
        return f"{t.config.get('schedule', '?')} ({t.config.get('timezone') or 'UTC'})"
    if t.type == "http":
        return f"auth {t.config.get('auth', 'key')}"
    if t.type == "redis-stream":
        return f"stream {t.config.get('stream', '?')} ({t.config.get('group', '?')})"
    if t.type == "object":
        return object_text(t)
    return "-"


def trigger_row(t: Trigger) -> tuple[str, ...]:
    if t.type == "http":
        last = t.url or "-"
    elif t.type == "timer":
        last = fired_text(t)
    elif t.status is not None:
        last = t.status + (f": {t.last_error}" if t.status == "error" and t.last_error else "")
    else:
        last = "-"
    return (
        t.name,
        t.type,
        t.qualifier or LATEST,
        "yes" if t.enabled else "no",
        schedule_text(t),
        last,
    )


def trigger_details(t: Trigger) -> list[str]:
    """``key  value`` lines."""
    rows: list[tuple[str, str]] = [
        ("trigger", _label(t)),
        ("type", t.type),
        ("qualifier", t.qualifier or LATEST),
        ("enabled", "yes" if t.enabled else "no"),
    ]
    if t.type == "timer":
        rows += [
            ("schedule", str(t.config.get("schedule", "?"))),
            ("timezone", str(t.config.get("timezone") or "UTC")),
            ("catch-up", str(t.config.get("catch_up") or "latest")),
            ("payload", _preview(t.config.get("payload", {}))),
            ("last fired", fired_text(t)),
        ]
    elif t.type == "http":
        rows += [("auth", str(t.config.get("auth", "key"))), ("url", t.url or "-")]
    elif t.type == "redis-stream":
        c = t.config
        window = c.get("batch_window_ms", 0)
        rows += [
            ("redis", str(c.get("url", "?"))),
            ("stream", str(c.get("stream", "?"))),
            ("group", str(c.get("group", "?"))),
            ("batch", f"{c.get('batch_size', '?')} entries, window {window} ms"),
            ("start", str(c.get("start", "$"))),
            ("max attempts", f"{c.get('max_attempts', '?')}, then {c.get('stream', '?')}:dead"),
            ("status", t.status or "-"),
            ("last error", t.last_error or "-"),
        ]
    elif t.type == "object":
        c = t.config
        rows += [
            ("bucket", str(c.get("bucket", "?"))),
            ("events", ", ".join(c.get("events") or ["s3:ObjectCreated:*"])),
            ("prefix", str(c.get("prefix") or "-")),
            ("suffix", str(c.get("suffix") or "-")),
        ]
    else:
        rows.append(("config", _preview(t.config)))
    rows += [("created", _time(t.created_at)), ("updated", _time(t.updated_at))]
    width = max(len(key) for key, _ in rows) + 2
    return [f"{key:<{width}}{value}" for key, value in rows]


def fired_text(t: Trigger) -> str:
    """When a timer last fired, on the wall clock of its time zone, with the UTC offset:
    ``2024-05-01 09:00:00 +08:00``; ``never`` before its first tick."""
    if not t.last_fired:
        return "never"
    try:
        when = datetime.fromisoformat(t.last_fired)
    except ValueError:
        return t.last_fired
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # the server sends UTC
    with contextlib.suppress(ValueError, KeyError, OSError):  # an unknown zone: UTC
        when = when.astimezone(ZoneInfo(str(t.config.get("timezone") or "UTC")))
    offset = when.strftime("%z")
    offset = f" {offset[:3]}:{offset[3:]}" if offset else ""
    return when.strftime("%Y-%m-%d %H:%M:%S") + offset


def _label(t: Trigger) -> str:
    return f"{t.function}/{t.name}"


def _target(t: Trigger) -> str:
    return f"{t.function}:{t.qualifier}" if t.qualifier else t.function


def _disabled_hint(t: Trigger) -> None:
    stderr_console().print(
        f"it is disabled: enable it with `nimbus trigger enable {t.function} {t.name}`",
        style="dim",
        markup=False,
    )


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > PAYLOAD_PREVIEW_CHARS:
        return text[:PAYLOAD_PREVIEW_CHARS] + f"… ({len(text)} chars; --json shows it whole)"
    return text


def _time(value: str | None) -> str:
    return (value or "-")[:19].replace("T", " ")
