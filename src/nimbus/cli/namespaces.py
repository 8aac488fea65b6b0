"""``nimbus namespace create | list | show | update | delete`` (admin; ``show`` also
works for a developer key's own namespace)."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated, Any

import typer

from nimbus.cli.context import TokenOption, UrlOption, client_from, echo_json, fail, print_table
from nimbus.cli.functions import format_bytes
from nimbus.client import Namespace

app = typer.Typer(
    name="namespace",
    help="Namespaces (tenants): their quotas and usage. Admin keys only, except `show`.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Namespace name.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_UNLIMITED = "Give a number, or 'unlimited'."
MaxFunctionsOpt = Annotated[
    str | None,
    typer.Option("--max-functions", metavar="N", help=f"Functions it may hold. {_UNLIMITED}"),
]
MaxCodeOpt = Annotated[
    str | None,
    typer.Option(
        "--max-code-bytes",
        metavar="SIZE",
        help=f"Total code package size, e.g. 104857600, 100MiB, 1GB. {_UNLIMITED}",
    ),
]
MaxInstancesOpt = Annotated[
    str | None,
    typer.Option(
        "--max-concurrent-instances",
        metavar="N",
        help=f"Instances of all its functions at once. {_UNLIMITED}",
    ),
]
MaxRateOpt = Annotated[
    str | None,
    typer.Option(
        "--max-requests-per-s",
        metavar="RATE",
        help=f"Invocations per second (bursts of twice that). {_UNLIMITED}",
    ),
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "KIB": 1024,
    "M": 1000**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1000**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1000**4,
    "TB": 1000**4,
    "TIB": 1024**4,
}


def parse_quota(option: str, text: str, *, kind: str = "int") -> int | float | None:
    """A quota value: a positive number (sizes may carry KB/MiB/... units) or 'unlimited'."""
    if text.strip().lower() in ("unlimited", "none", "null"):
        return None
    value: float
    if kind == "size":
        match = _SIZE.match(text)
        unit = (match.group(2) or "").upper() if match else ""
        if not match or unit not in _UNITS:
            fail(f"{option} {text!r}: give bytes, e.g. 1048576, 100MiB or 1GB, or 'unlimited'")
        value = float(match.group(1)) * _UNITS[unit]
    else:
        try:
            value = float(text)
        except ValueError:
            fail(f"{option} {text!r}: give a positive number, or 'unlimited'")
    if value <= 0:
        fail(f"{option} must be positive (or 'unlimited'), got {text!r}")
    if kind == "float":
        return value
    if kind == "int" and value != int(value):
        fail(f"{option} must be a whole number, got {text!r}")
    return int(value)


def _quotas(
    max_functions: str | None,
    max_code_bytes: str | None,
    max_concurrent_instances: str | None,
    max_requests_per_s: str | None,
) -> dict[str, Any]:
    given = {
        "max_functions": ("--max-functions", max_functions, "int"),
        "max_code_bytes": ("--max-code-bytes", max_code_bytes, "size"),
        "max_concurrent_instances": ("--max-concurrent-instances", max_concurrent_instances, "int"),
        "max_requests_per_s": ("--max-requests-per-s", max_requests_per_s, "float"),
    }
    return {
        field: parse_quota(option, text, kind=kind)
        for field, (option, text, kind) in given.items()
        if text is not None
    }


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArg,
    max_functions: MaxFunctionsOpt = None,
    max_code_bytes: MaxCodeOpt = None,
    max_concurrent_instances: MaxInstancesOpt = None,
    max_requests_per_s: MaxRateOpt = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create a namespace. Quotas not given take the server's defaults."""
    quotas = _quotas(max_functions, max_code_bytes, max_concurrent_instances, max_requests_per_s)
    with client_from(ctx, url, token) as client:
        namespace = client.create_namespace(name, **quotas)
    typer.echo(f"created namespace {namespace.name} · {_quota_summary(namespace)}")


@app.command("list")
def list_namespaces(
    ctx: typer.Context, as_json: JsonOpt = False, url: UrlOption = None, token: TokenOption = None
) -> None:
    """List namespaces with their usage and quotas."""
    with client_from(ctx, url, token) as client:
        found = client.list_namespaces()
    if as_json:
        echo_json([asdict(n) for n in found])
        return
    columns = ("NAME", "FUNCTIONS", "CODE", "INSTANCES", "REQ/S", "CREATED")
    print_table(columns, [_row(n) for n in found])


@app.command("show")
def show(
    ctx: typer.Context,
    name: NameArg,
    as_json: JsonOpt = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show a namespace's quotas and what it uses now."""
    with client_from(ctx, url, token) as client:
        namespace = client.get_namespace(name)
    if as_json:
        echo_json(asdict(namespace))
        return
    typer.echo("\n".join(_details(namespace)))


@app.command("update")
def update(
    ctx: typer.Context,
    name: NameArg,
    max_functions: MaxFunctionsOpt = None,
    max_code_bytes: MaxCodeOpt = None,
    max_concurrent_instances: MaxInstancesOpt = None,
    max_requests_per_s: MaxRateOpt = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Change quotas; only those given change ('unlimited' removes a limit)."""
    quotas = _quotas(max_functions, max_code_bytes, max_concurrent_instances, max_requests_per_s)
    if not quotas:
        fail(
            "nothing to update: give at least one of --max-functions, --max-code-bytes, "
            "--max-concurrent-instances, --max-requests-per-s"
        )
    with client_from(ctx, url, token) as client:
        namespace = client.update_namespace(name, **quotas)
    typer.echo(f"updated namespace {namespace.name} · {_quota_summary(namespace)}")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete an empty namespace (no functions, no live keys); asks first unless --yes."""
    if not yes:
        typer.confirm(f"Delete namespace {name!r}?", abort=True, err=True)
    with client_from(ctx, url, token) as client:
        client.delete_namespace(name)
    typer.echo(f"deleted namespace {name}")


def _limit(used: str, limit: Any, fmt: Any = str) -> str:
    return f"{used} / {'∞' if limit is None else fmt(limit)}"


def _row(n: Namespace) -> tuple[str, ...]:
    q, u = n.quotas, n.usage
    return (
        n.name,
        _limit(str(u.functions) if u else "-", q.max_functions),
        _limit(format_bytes(u.code_bytes) if u else "-", q.max_code_bytes, format_bytes),
        _limit(str(u.instances) if u else "-", q.max_concurrent_instances),
        "∞" if q.max_requests_per_s is None else f"{q.max_requests_per_s:g}",
        (n.created_at or "")[:19].replace("T", " "),
    )


def _quota_summary(n: Namespace) -> str:
    q = n.quotas
    parts = [
        f"max_functions={q.max_functions if q.max_functions is not None else 'unlimited'}",
        "max_code_bytes="
        + (format_bytes(q.max_code_bytes) if q.max_code_bytes is not None else "unlimited"),
        "max_concurrent_instances="
        + (
            str(q.max_concurrent_instances)
            if q.max_concurrent_instances is not None
            else "unlimited"
        ),
        "max_requests_per_s="
        + (f"{q.max_requests_per_s:g}" if q.max_requests_per_s is not None else "unlimited"),
    ]
    return " · ".join(parts)


def _details(n: Namespace) -> list[str]:
    q, u = n.quotas, n.usage
    rows = [
        ("name", n.name),
        ("created", n.created_at or "-"),
        ("functions", _limit(str(u.functions) if u else "-", q.max_functions)),
        (
            "code",
            _limit(format_bytes(u.code_bytes) if u else "-", q.max_code_bytes, format_bytes),
        ),
        ("instances", _limit(str(u.instances) if u else "-", q.max_concurrent_instances)),
        (
            "requests/s",
            "unlimited" if q.max_requests_per_s is None else f"{q.max_requests_per_s:g}",
        ),
    ]
    width = max(len(k) for k, _ in rows) + 2
    return [f"{k:<{width}}{v}" for k, v in rows]
