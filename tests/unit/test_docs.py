"""The user docs keep up with the code: settings, routes and error codes are all documented.

Nothing here starts a server: the FastAPI app is built with a stand-in for the
platform (building it only registers routes) and its OpenAPI document is read.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
import typer.main
from typer.core import TyperGroup

import nimbus.errors
import nimbus.gateway.app
from nimbus.cli.main import app as cli_app
from nimbus.config import PackageLimits, Settings

if TYPE_CHECKING:
    from nimbus.app import Platform

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: Settings that are deliberately not read from ``NIMBUS_*`` variables.
NOT_FROM_ENVIRONMENT = frozenset({"package_limits"})
#: An error code: ``Family.Reason``.
CODE_RE = re.compile(r"^[A-Z][A-Za-z]*\.[A-Z][A-Za-z]*$")
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


@cache
def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


class _PlatformStandIn:
    """Takes the place of a Platform while routes are registered (nothing is served)."""

    def __getattr__(self, name: str) -> object:
        raise AttributeError(
            f"create_app() read platform.{name} while building the app; "
            "give _PlatformStandIn that attribute"
        )


def _v1_operations() -> list[str]:
    """``METHOD /v1/path`` of every operation the gateway serves under /v1.

    Read from the app's OpenAPI document, the public view of its route table
    (FastAPI keeps included routers in private structures)."""
    app = nimbus.gateway.app.create_app(cast("Platform", _PlatformStandIn()))
    paths: dict[str, dict[str, object]] = app.openapi()["paths"]
    return sorted(
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for method in operations
        if method in HTTP_METHODS
    )


def _error_classes() -> list[type[nimbus.errors.NimbusError]]:
    """Every error class defined in nimbus.errors, the base class included."""
    return [
        obj
        for obj in vars(nimbus.errors).values()
        if inspect.isclass(obj)
        and issubclass(obj, nimbus.errors.NimbusError)
        and obj.__module__ == nimbus.errors.__name__
    ]


def _gateway_codes() -> set[str]:
    """Error codes the gateway writes itself (string literals such as ``Route.NotFound``)."""
    source = Path(inspect.getfile(nimbus.gateway.app)).read_text(encoding="utf-8")
    return {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and CODE_RE.match(node.value)
    }


# ---- docs/configuration.md -------------------------------------------------------


def test_every_setting_is_documented_with_its_environment_variable() -> None:
    doc = _doc("configuration.md")
    names = [f.name for f in dataclasses.fields(Settings) if f.name not in NOT_FROM_ENVIRONMENT]
    assert len(names) >= 20, names
    missing = [name for name in names if f"`NIMBUS_{name.upper()}`" not in doc]
    assert not missing, f"docs/configuration.md does not mention these settings: {missing}"


def test_settings_left_out_are_really_not_read_from_the_environment() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert NOT_FROM_ENVIRONMENT.issubset(fields)
    env = {f"NIMBUS_{name.upper()}": "1" for name in NOT_FROM_ENVIRONMENT}
    settings, defaults = Settings.from_mapping(env), Settings()
    for name in NOT_FROM_ENVIRONMENT:
        assert getattr(settings, name) == getattr(defaults, name), f"NIMBUS_{name.upper()} is read"
    assert "not configurable" in _doc("configuration.md")


def test_package_limits_in_the_docs_are_the_real_ones() -> None:
    doc = _doc("configuration.md")
    limits = PackageLimits()
    for value in (limits.max_zip_bytes, limits.max_unpacked_bytes, limits.max_files):
        assert f"{value:,}" in doc, f"docs/configuration.md does not give the limit {value:,}"


def test_every_flag_of_nimbus_serve_is_documented() -> None:
    group = typer.main.get_command(cli_app)
    assert isinstance(group, TyperGroup)
    serve = group.commands["serve"]
    flags = [opt for param in serve.params for opt in param.opts if opt.startswith("--")]
    assert flags, "nimbus serve has no flags?"
    missing = [flag for flag in flags if f"`{flag}`" not in _doc("configuration.md")]
    assert not missing, f"docs/configuration.md does not mention these flags: {missing}"


# ---- docs/api.md -----------------------------------------------------------------


def test_every_v1_route_is_documented() -> None:
    doc = _doc("api.md")
    operations = _v1_operations()
    assert len(operations) >= 15, operations
    missing = [op for op in operations if not re.search(rf"{re.escape(op)}(?![\w/{{}}-])", doc)]
    assert not missing, f"docs/api.md does not document: {missing}"


@pytest.mark.parametrize("error", _error_classes(), ids=lambda e: e.code)
def test_every_error_code_is_in_the_table_with_its_status(
    error: type[nimbus.errors.NimbusError],
) -> None:
    row = re.compile(rf"^\|\s*`{re.escape(error.code)}`\s*\|\s*{error.status}\s*\|", re.MULTILINE)
    assert row.search(_doc("api.md")), (
        f"docs/api.md has no error table row for {error.code} ({error.status})"
    )


def test_error_classes_are_all_found() -> None:
    found = set(_error_classes())
    assert set(nimbus.errors.ALL_ERRORS) <= found
    assert nimbus.errors.NimbusError in found


def test_codes_the_gateway_writes_itself_are_documented() -> None:
    codes = _gateway_codes()
    assert {"Route.NotFound", "Route.MethodNotAllowed", "Platform.InternalError"} <= codes
    missing = sorted(code for code in codes if f"`{code}`" not in _doc("api.md"))
    assert not missing, f"docs/api.md does not mention these error codes: {missing}"
