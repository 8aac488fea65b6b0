"""Which server and which API key a command talks to, and how the CLI reports problems.

Resolution, for the URL and the key separately: the command's ``--url`` /
``--token``, else the same options given before the command
(``nimbus --url ... list``), else ``NIMBUS_URL`` / ``NIMBUS_TOKEN``, else the
config file written by ``nimbus login``. The URL finally defaults to
``http://127.0.0.1:8080``; a missing key is a usage error (exit code 2).
The namespace (``nimbus --namespace NS ...``, else ``NIMBUS_NAMESPACE``) is
sent as ``X-Nimbus-Namespace``; without it the server picks the key's own.

Every command gets its client from :func:`make_client`, the one place tests
replace to talk to an ``httpx.MockTransport``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nimbus.client import NimbusClient

DEFAULT_URL = "http://127.0.0.1:8080"
_PIPE_WIDTH = 10_000

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Server URL. Else NIMBUS_URL, else the one saved by `nimbus login`, "
        f"else {DEFAULT_URL}.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API key. Else NIMBUS_TOKEN, else the one saved by `nimbus login`.",
        show_default=False,
    ),
]


NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        envvar="NIMBUS_NAMESPACE",
        help="Namespace to act in (admin keys; other keys always act in their own). "
        "Else NIMBUS_NAMESPACE.",
        show_default=False,
    ),
]


class CliError(Exception):
    """A problem reported as ``error: <message>`` with ``exit_code`` (2: usage, 1: failure)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def fail(message: str, exit_code: int = 2) -> NoReturn:
    raise CliError(message, exit_code)


@dataclass(frozen=True)
class GlobalOptions:
    """``--url`` / ``--token`` / ``--namespace`` given before the command name."""

    url: str | None = None
    token: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class Target:
    """A resolved server and key; ``source`` says where the key came from (for messages)."""

    url: str
    token: str | None
    source: str = "flag"
    #: Sent as X-Nimbus-Namespace when set.
    namespace: str | None = None


# -- config file ---------------------------------------------------------------


def config_path(env: Mapping[str, str]) -> Path:
    """``$NIMBUS_CONFIG``, else ``$XDG_CONFIG_HOME/nimbus/config.json``, else ``~/.config/...``."""
    if env.get("NIMBUS_CONFIG"):
        return Path(env["NIMBUS_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "nimbus" / "config.json"


def load_config(path: Path) -> dict[str, str]:
    """The saved ``url`` and ``token`` (an empty dict when there is no config file)."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        fail(f"cannot read the config file {path} ({exc}); run `nimbus login` again")
    if not isinstance(data, dict):
        fail(f"the config file {path} is not a JSON object; run `nimbus login` again")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def save_config(path: Path, url: str, token: str) -> None:
    """Write the config atomically, readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"url": url, "token": token}, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# -- resolution ----------------------------------------------------------------


def resolve_url(url: str | None, env: Mapping[str, str]) -> str:
    """Apply flag > environment > config file > default to the server URL."""
    return url or env.get("NIMBUS_URL") or load_config(config_path(env)).get("url") or DEFAULT_URL


def resolve_target(url: str | None, token: str | None, env: Mapping[str, str]) -> Target:
    """Apply flag > environment > config file to the URL and the key."""
    config = load_config(config_path(env))
    resolved_url = resolve_url(url, env)
    if token:
        return Target(resolved_url, token, "--token")
    if env.get("NIMBUS_TOKEN"):
        return Target(resolved_url, env["NIMBUS_TOKEN"], "NIMBUS_TOKEN")
    if config.get("token"):
        return Target(resolved_url, config["token"], str(config_path(env)))
    fail(
        "no API key: run `nimbus login --url URL --token KEY`, set NIMBUS_TOKEN, "
        "or pass --token (the admin key is generated on the server's first start, "
        "or preset there with NIMBUS_ADMIN_TOKEN)"
    )


def make_client(target: Target) -> NimbusClient:
    """The factory every command uses; tests monkeypatch it."""
    return NimbusClient(target.url, target.token, namespace=target.namespace)


def client_from(ctx: typer.Context, url: str | None, token: str | None) -> NimbusClient:
    """A client for the server, key and namespace a command resolved to."""
    options = global_options(ctx)
    target = resolve_target(url or options.url, token or options.token, os.environ)
    return make_client(dataclasses.replace(target, namespace=options.namespace))


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The options given before the command (found on the root context)."""
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, GlobalOptions) else ctx.obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


# -- output --------------------------------------------------------------------


def stdout_console() -> Console:
    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console.width = _PIPE_WIDTH  # piped tables keep whole values
    return console


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def echo_json(value: Any) -> None:
    """Pretty JSON on stdout, never wrapped or styled (it is meant for pipes)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain table on stdout; cells are literal text, never rich markup."""
    table = Table(*columns, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    stdout_console().print(table)
