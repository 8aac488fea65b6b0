"""The ``nimbus`` command: a typer app, one module per noun, errors turned into exit codes.

Exit codes: 0 ok, 1 the function failed or the server said no (``error: <code>:
<message>`` on stderr), 2 a usage error.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from nimbus import __version__
from nimbus.cli import (
    aliases,
    audit,
    buckets,
    functions,
    invocations,
    invoke,
    keys,
    login,
    logs,
    namespaces,
    scaling,
    triggers,
    versions,
)
from nimbus.cli.context import CliError, GlobalOptions, NamespaceOption, TokenOption, UrlOption
from nimbus.cli.packaging import PackageError
from nimbus.cli.serve import serve
from nimbus.client import ApiError, NimbusClientError


class NimbusGroup(TyperGroup):
    """Reports the errors every command may raise in one format, with the right exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            _error(exc.message)
            raise typer.Exit(exc.exit_code) from exc
        except PackageError as exc:
            _error(str(exc))
            raise typer.Exit(2) from exc
        except ApiError as exc:
            hint = f" (retry after {exc.retry_after_s:g} s)" if exc.retry_after_s else ""
            _error(f"{exc.code}: {exc.message}{hint}")
            raise typer.Exit(1) from exc
        except NimbusClientError as exc:
            _error(str(exc))
            raise typer.Exit(1) from exc


def _error(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg="red")


app = typer.Typer(
    cls=NimbusGroup,
    name="nimbus",
    help="Nimbus: a self-hosted serverless platform. Deploy, invoke and watch functions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"nimbus {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    url: UrlOption = None,
    token: TokenOption = None,
    namespace: NamespaceOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Nimbus: a self-hosted serverless platform. Deploy, invoke and watch functions."""
    ctx.obj = GlobalOptions(url=url, token=token, namespace=namespace)


app.command("serve")(serve)
app.command("deploy")(functions.deploy)
app.command("update")(functions.update)
app.command("list")(functions.list_functions)
app.command("show")(functions.show)
app.command("delete")(functions.delete)
app.command("runtimes")(functions.runtimes)
app.command("invoke")(invoke.invoke)
app.add_typer(invocations.invocation_app, name="invocation")
app.add_typer(invocations.dead_letters_app, name="dead-letters")
app.command("publish")(versions.publish)
app.command("versions", help="List a function's versions (short for `nimbus version list`).")(
    versions.list_versions
)
app.add_typer(versions.app, name="version")
app.add_typer(aliases.app, name="alias")
app.add_typer(scaling.concurrency_app, name="concurrency")
app.add_typer(scaling.provisioned_app, name="provisioned")
app.add_typer(triggers.app, name="trigger")
app.add_typer(buckets.app, name="bucket")
app.command("logs")(logs.logs)
app.command("login")(login.login)
app.add_typer(namespaces.app, name="namespace")
app.add_typer(keys.app, name="key")
app.command("audit")(audit.audit)


def main() -> None:
    """Entry point of the ``nimbus`` console script."""
    app()
