"""The tenancy CLI against an httpx.MockTransport: headers, bodies, the one-time secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from nimbus.cli import context
from nimbus.cli.context import CliError
from nimbus.cli.main import app
from nimbus.cli.namespaces import parse_quota
from nimbus.client import NimbusClient

NAMESPACE = {
    "name": "team",
    "created_at": "2024-05-01T12:00:00Z",
    "quotas": {
        "max_functions": 5,
        "max_code_bytes": None,
        "max_concurrent_instances": 2,
        "max_requests_per_s": None,
    },
    "usage": {"functions": 1, "code_bytes": 2048, "instances": 0},
}
KEY = {
    "id": "abc123",
    "namespace": "team",
    "role": "developer",
    "name": "ci",
    "created_at": "2024-05-01T12:00:00Z",
}


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/v1/keys" and request.method == "POST":
            return httpx.Response(201, json={**KEY, "secret": "nmb_topsecret"})
        if path.startswith("/v1/namespaces"):
            return httpx.Response(201 if request.method == "POST" else 200, json=NAMESPACE)
        if path == "/v1/functions":
            return httpx.Response(200, json={"functions": []})
        return httpx.Response(404, json={"error": {"code": "Route.NotFound", "message": "no"}})

    def make_client(target: context.Target) -> NimbusClient:
        return NimbusClient(
            target.url,
            target.token,
            namespace=target.namespace,
            transport=httpx.MockTransport(handle),
        )

    for var in ("NIMBUS_URL", "NIMBUS_NAMESPACE", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIMBUS_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    monkeypatch.setattr(context, "make_client", make_client)
    yield seen


def test_global_namespace_option_and_env_send_the_header(
    requests: list[httpx.Request], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--namespace", "team", "list"]).exit_code == 0
    assert requests[-1].headers["X-Nimbus-Namespace"] == "team"
    monkeypatch.setenv("NIMBUS_NAMESPACE", "other")
    assert runner.invoke(app, ["list"]).exit_code == 0
    assert requests[-1].headers["X-Nimbus-Namespace"] == "other"
    monkeypatch.delenv("NIMBUS_NAMESPACE")
    assert runner.invoke(app, ["list"]).exit_code == 0
    assert "X-Nimbus-Namespace" not in requests[-1].headers


def test_key_create_prints_the_secret_once_with_a_warning(requests: list[httpx.Request]) -> None:
    result = CliRunner().invoke(
        app, ["key", "create", "--namespace", "team", "--role", "developer", "--name", "ci"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "nmb_topsecret"
    assert "only time" in result.stderr
    assert json.loads(requests[-1].content) == {
        "role": "developer",
        "name": "ci",
        "namespace": "team",
    }
    bad = CliRunner().invoke(app, ["key", "create", "--role", "root", "--name", "x"])
    assert bad.exit_code == 2


def test_namespace_create_sends_parsed_quotas(requests: list[httpx.Request]) -> None:
    result = CliRunner().invoke(
        app,
        ["namespace", "create", "team", "--max-code-bytes", "1MiB", "--max-requests-per-s", "2.5"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(requests[-1].content) == {
        "name": "team",
        "max_code_bytes": 1024 * 1024,
        "max_requests_per_s": 2.5,
    }
    assert "created namespace team" in result.stdout
    update = CliRunner().invoke(app, ["namespace", "update", "team", "--max-functions", "none"])
    assert update.exit_code == 0
    assert json.loads(requests[-1].content) == {"max_functions": None}
    assert CliRunner().invoke(app, ["namespace", "update", "team"]).exit_code == 2


def test_parse_quota() -> None:
    assert parse_quota("--x", "10") == 10
    assert parse_quota("--x", "unlimited") is None
    assert parse_quota("--x", "100MB", kind="size") == 100_000_000
    assert parse_quota("--x", "1.5KiB", kind="size") == 1536
    assert parse_quota("--x", "0.5", kind="float") == 0.5
    for text, kind in (("0", "int"), ("1.5", "int"), ("ten", "int"), ("5 parsecs", "size")):
        with pytest.raises(CliError):
            parse_quota("--x", text, kind=kind)
