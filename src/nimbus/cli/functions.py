"""``nimbus deploy | update | list | show | delete | runtimes``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import progress as bar

from nimbus.cli.context import (
    TokenOption,
    UrlOption,
    client_from,
    echo_json,
    fail,
    print_table,
    stderr_console,
)
from nimbus.cli.invocations import format_max_age, parse_max_age
from nimbus.cli.packaging import load_package
from nimbus.client import LATEST, CodeUpload, Function, FunctionSpec, NimbusClient

#: Packages larger than this are uploaded with a progress bar.
PROGRESS_THRESHOLD_BYTES = 1024 * 1024

NameArg = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
RuntimeOpt = Annotated[
    str | None, typer.Option("--runtime", help="Runtime, e.g. python3.11 (see `nimbus runtimes`).")
]
HandlerOpt = Annotated[
    str | None,
    typer.Option(
        "--handler",
        help="Entry point: module.function for an event handler (app.handler), or "
        "module:app for an HTTP service's WSGI/ASGI app (app:app).",
    ),
]
MemoryOpt = Annotated[int | None, typer.Option("--memory", help="Memory limit in MB.", min=1)]
TimeoutOpt = Annotated[
    int | None,
    typer.Option("--timeout", help="Timeout of one invocation, in whole seconds.", min=1),
]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        "-e",
        metavar="KEY=VALUE",
        help="Environment variable (repeatable). Replaces the function's whole env map.",
    ),
]
SecretEnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret-env",
        metavar="KEY=VALUE",
        help="Secret environment variable (repeatable): stored encrypted, never shown again. "
        "Replaces the function's whole secret map.",
    ),
]
DescriptionOpt = Annotated[str | None, typer.Option("--description", help="Free text.")]
MaxInstancesOpt = Annotated[
    int | None,
    typer.Option("--max-instances", help="Cap on concurrent instances of the function.", min=1),
]
NetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--network",
        metavar="none|egress",
        help="none (the default for a new function): the instance reaches nothing but its "
        "Runtime API; egress: it may also reach outside networks.",
    ),
]
AsyncMaxAttemptsOpt = Annotated[
    int | None,
    typer.Option(
        "--async-max-attempts",
        help="Attempts per asynchronous event, 1-3 (the first and up to two retries).",
        min=1,
    ),
]
AsyncMaxAgeOpt = Annotated[
    str | None,
    typer.Option(
        "--async-max-age",
        metavar="SECONDS|DURATION",
        help="Oldest an asynchronous event may get before it is given up: seconds or "
        "a duration like 90m or 6h (1 minute to 6 hours).",
    ),
]
OnSuccessOpt = Annotated[
    str | None,
    typer.Option(
        "--on-success",
        metavar="FUNCTION",
        help="Function of the same namespace that gets a record of each asynchronous "
        "event that succeeded.",
    ),
]
OnFailureOpt = Annotated[
    str | None,
    typer.Option(
        "--on-failure",
        metavar="FUNCTION",
        help="Function of the same namespace that gets a record of each asynchronous "
        "event that failed its last attempt.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

NETWORKS = ("none", "egress")


def deploy(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(help="A directory (zipped for you) or a .zip file.", show_default=False),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Function name.", show_default=False)],
    runtime: RuntimeOpt = None,
    handler: HandlerOpt = None,
    memory: MemoryOpt = None,
    timeout: TimeoutOpt = None,
    env: EnvOpt = None,
    secret_env: SecretEnvOpt = None,
    description: DescriptionOpt = None,
    max_instances: MaxInstancesOpt = None,
    network: NetworkOpt = None,
    async_max_attempts: AsyncMaxAttemptsOpt = None,
    async_max_age: AsyncMaxAgeOpt = None,
    on_success: OnSuccessOpt = None,
    on_failure: OnFailureOpt = None,
    prewarm: Annotated[
        bool,
        typer.Option(
            "--prewarm",
            help="Start one instance as the function is created, before its first call "
            "(the server can do this on creation only).",
        ),
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Upload code and create the function, or update the code of an existing one.

    A new function needs --runtime and --handler. For an existing function only
    the code and the options you give change.
    """
    changes = config_changes(
        runtime=runtime,
        handler=handler,
        memory=memory,
        timeout=timeout,
        env=env,
        secret_env=secret_env,
        description=description,
        max_instances=max_instances,
        network=network,
        async_max_attempts=async_max_attempts,
        async_max_age=async_max_age,
        on_success=on_success,
        on_failure=on_failure,
    )
    package = load_package(path)
    with client_from(ctx, url, token) as client:
        existing = client.find_function(name)
        created_as = None
        if existing is None:
            created_as = _runtime_and_handler(name, runtime, handler)
        upload = _upload(client, package)
        if created_as is None:
            function = client.patch_function(name, {"code_sha256": upload.sha256, **changes})
            verb = "updated"
            if prewarm:
                stderr_console().print(
                    f"--prewarm skipped: {name} already existed, and the server prewarms "
                    "only when a function is created; its next call starts an instance "
                    f"(or publish with `nimbus publish {name} --prewarm`)",
                    style="yellow",
                )
                prewarm = False
        else:
            spec = FunctionSpec(
                runtime=created_as[0],
                handler=created_as[1],
                code_sha256=upload.sha256,
                memory_mb=memory,
                timeout_s=changes.get("timeout_s"),
                env=changes.get("env"),
                description=description,
                max_instances=max_instances,
                secret_env=changes.get("secret_env"),
                network=network,
                async_max_attempts=async_max_attempts,
                async_max_age_s=changes.get("async_max_age_s"),
                on_success=on_success,
                on_failure=on_failure,
            )
            function = client.put_function(name, spec, prewarm=prewarm)
            verb = "created"
    typer.echo(
        f"{verb} {function.name} · {function.runtime} · revision {function.revision}"
        f" · code {format_bytes(function.code_size or upload.size)}"
        + (" · prewarming one instance" if prewarm else "")
    )


def update(
    ctx: typer.Context,
    name: NameArg,
    memory: MemoryOpt = None,
    timeout: TimeoutOpt = None,
    env: EnvOpt = None,
    clear_env: Annotated[
        bool, typer.Option("--clear-env", help="Remove every environment variable.")
    ] = False,
    secret_env: SecretEnvOpt = None,
    clear_secret_env: Annotated[
        bool,
        typer.Option("--clear-secret-env", help="Remove every secret environment variable."),
    ] = False,
    handler: HandlerOpt = None,
    runtime: RuntimeOpt = None,
    description: DescriptionOpt = None,
    max_instances: MaxInstancesOpt = None,
    network: NetworkOpt = None,
    async_max_attempts: AsyncMaxAttemptsOpt = None,
    async_max_age: AsyncMaxAgeOpt = None,
    on_success: OnSuccessOpt = None,
    clear_on_success: Annotated[
        bool, typer.Option("--clear-on-success", help="Remove the on-success destination.")
    ] = False,
    on_failure: OnFailureOpt = None,
    clear_on_failure: Annotated[
        bool, typer.Option("--clear-on-failure", help="Remove the on-failure destination.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Change a function's configuration (not its code). Only the options given change."""
    changes = config_changes(
        runtime=runtime,
        handler=handler,
        memory=memory,
        timeout=timeout,
        env=env,
        secret_env=secret_env,
        description=description,
        max_instances=max_instances,
        network=network,
        async_max_attempts=async_max_attempts,
        async_max_age=async_max_age,
        on_success=on_success,
        on_failure=on_failure,
    )
    for clear, given, option in (
        (clear_on_success, on_success, "on-success"),
        (clear_on_failure, on_failure, "on-failure"),
    ):
        if clear:
            if given is not None:
                fail(f"--{option} and --clear-{option} cannot be used together")
            changes[option.replace("-", "_")] = None  # PATCH: null removes it
    if clear_env:
        if env:
            fail("--env and --clear-env cannot be used together")
        changes["env"] = {}
    if clear_secret_env:
        if secret_env:
            fail("--secret-env and --clear-secret-env cannot be used together")
        changes["secret_env"] = {}
    if not changes:
        fail(
            "nothing to update: give at least one of --memory, --timeout, --env, --clear-env, "
            "--secret-env, --clear-secret-env, --handler, --runtime, --description, "
            "--max-instances, --network, --async-max-attempts, --async-max-age, "
            "--on-success, --clear-on-success, --on-failure, --clear-on-failure"
        )
    with client_from(ctx, url, token) as client:
        function = client.patch_function(name, changes)
    typer.echo(f"updated {function.name} · revision {function.revision}")


def list_functions(
    ctx: typer.Context, as_json: JsonOpt = False, url: UrlOption = None, token: TokenOption = None
) -> None:
    """List the functions in your namespace."""
    with client_from(ctx, url, token) as client:
        functions = client.list_functions()
    if as_json:
        echo_json([asdict(f) for f in functions])
        return
    if not functions:
        stderr_console().print("no functions yet; create one with `nimbus deploy`", style="dim")
        return
    columns = ("NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "REV", "CODE", "UPDATED")
    rows = [
        (
            f.name,
            f.runtime,
            f.handler,
            f"{f.memory_mb} MB",
            f"{f.timeout_s:g} s",
            str(f.revision),
            format_bytes(f.code_size),
            f.updated_at[:19].replace("T", " "),
        )
        for f in functions
    ]
    print_table(columns, rows)


def show(
    ctx: typer.Context,
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the function as JSON.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one function's configuration."""
    with client_from(ctx, url, token) as client:
        function = client.get_function(name)
    if as_json:
        echo_json(asdict(function))
        return
    typer.echo("\n".join(function_details(function)))


def delete(
    ctx: typer.Context,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a function (asks first unless --yes)."""
    if not yes:
        typer.confirm(f"Delete function {name!r}?", abort=True, err=True)
    with client_from(ctx, url, token) as client:
        client.delete_function(name)
    typer.echo(f"deleted {name}")


def runtimes(
    ctx: typer.Context, as_json: JsonOpt = False, url: UrlOption = None, token: TokenOption = None
) -> None:
    """List the runtimes the server offers."""
    with client_from(ctx, url, token) as client:
        found = client.list_runtimes()
    if as_json:
        echo_json([asdict(r) for r in found])
        return
    print_table(("NAME", "KIND", "VERSION"), [(r.name, r.kind, r.version or "-") for r in found])


def config_changes(
    *,
    runtime: str | None,
    handler: str | None,
    memory: int | None,
    timeout: int | None,
    env: list[str] | None,
    description: str | None,
    max_instances: int | None,
    secret_env: list[str] | None = None,
    network: str | None = None,
    async_max_attempts: int | None = None,
    async_max_age: str | None = None,
    on_success: str | None = None,
    on_failure: str | None = None,
) -> dict[str, Any]:
    """The PATCH body for the options that were given (``None`` means not given)."""
    if network is not None and network not in NETWORKS:
        raise typer.BadParameter(f"choose one of: {', '.join(NETWORKS)}", param_hint="--network")
    for target, option in ((on_success, "on-success"), (on_failure, "on-failure")):
        if target is not None and not target.strip():
            raise typer.BadParameter(
                f"give a function name (to remove the destination: `nimbus update NAME "
                f"--clear-{option}`)",
                param_hint=f"--{option}",
            )
    changes: dict[str, Any] = {
        "runtime": runtime,
        "handler": handler,
        "memory_mb": memory,
        "timeout_s": timeout,
        "env": parse_env(env) if env else None,
        "secret_env": parse_env(secret_env, "--secret-env") if secret_env else None,
        "description": description,
        "max_instances": max_instances,
        "network": network,
        "async_max_attempts": async_max_attempts,
        "async_max_age_s": parse_max_age(async_max_age) if async_max_age is not None else None,
        "on_success": on_success,
        "on_failure": on_failure,
    }
    return {k: v for k, v in changes.items() if v is not None}


def parse_env(pairs: list[str], option: str = "--env") -> dict[str, str]:
    """``["K=V", ...]`` as a dict; the value may itself contain ``=``."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            shown = repr(pair) if option == "--env" else f"'{key}=…'"
            fail(f"{option} {shown} must look like KEY=VALUE")
        env[key.strip()] = value
    return env


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _runtime_and_handler(name: str, runtime: str | None, handler: str | None) -> tuple[str, str]:
    if runtime is None or handler is None:
        fail(
            f"function {name!r} does not exist yet; creating it needs --runtime and "
            "--handler (e.g. --runtime python3.11 --handler app.handler; "
            "see `nimbus runtimes`)"
        )
    return runtime, handler


def _upload(client: NimbusClient, package: bytes) -> CodeUpload:
    if len(package) <= PROGRESS_THRESHOLD_BYTES:
        return client.upload_code(package)
    columns = (
        bar.TextColumn("uploading"),
        bar.BarColumn(),
        bar.DownloadColumn(binary_units=True),
        bar.TransferSpeedColumn(),
        bar.TimeRemainingColumn(),
    )
    with bar.Progress(*columns, console=stderr_console()) as progress:
        task = progress.add_task("upload", total=len(package))
        return client.upload_code(package, lambda n: progress.advance(task, n))


def function_details(function: Function) -> list[str]:
    """``key  value`` lines; a multi-line value (env) continues under its first line."""
    env = "\n".join(f"{k}={v}" for k, v in sorted(function.env.items())) or "-"
    if function.reserved_concurrency is None:
        reserved = "-"
    elif function.reserved_concurrency == 0:
        reserved = "0 (disabled: every call answers 429)"
    else:
        reserved = str(function.reserved_concurrency)
    rows = [
        ("name", function.name),
        ("namespace", function.namespace),
        ("version", function.version),
        ("runtime", function.runtime),
        ("handler", function.handler),
        ("type", function.type),
        ("memory", f"{function.memory_mb} MB"),
        ("timeout", f"{function.timeout_s:g} s"),
        ("max instances", "-" if function.max_instances is None else str(function.max_instances)),
        ("reserved concurrency", reserved),
        ("network", function.network),
        # Asynchronous settings apply to the whole function: shown on the head only.
        *(
            [
                ("async max attempts", str(function.async_max_attempts)),
                ("async max age", format_max_age(function.async_max_age_s)),
                ("on success", function.on_success or "-"),
                ("on failure", function.on_failure or "-"),
            ]
            if function.version == LATEST
            else []
        ),
        ("env", env),
        ("secret env", "\n".join(f"{k}=<hidden>" for k in function.secret_env_keys) or "-"),
        ("description", function.description or "-"),
        ("code", f"{format_bytes(function.code_size)}  sha256:{function.code_sha256}"),
        ("revision", str(function.revision)),
        ("created", function.created_at),
        ("updated", function.updated_at),
    ]
    width = max(len(key) for key, _ in rows) + 2
    lines = []
    for key, value in rows:
        first, *rest = value.split("\n")
        lines.append(f"{key:<{width}}{first}")
        lines.extend(" " * width + more for more in rest)
    return lines
