"""The ``nimbus`` CLI against an in-memory fake of the /v1 API (httpx.MockTransport)."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from nimbus.cli import context
from nimbus.cli.logs import format_line, parse_since
from nimbus.cli.main import app
from nimbus.client import LogLine, NimbusClient

FUNCTION = {
    "name": "hello",
    "namespace": "default",
    "runtime": "python3.11",
    "handler": "app.handler",
    "code_sha256": "ab" * 32,
    "code_size": 2048,
    "memory_mb": 128,
    "timeout_s": 3,
    "env": {},
    "description": "",
    "max_instances": None,
    "revision": 1,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


class FakeNimbus:
    """Records every request; answers like the real server for one function store."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.functions: dict[str, dict[str, Any]] = {}
        self.invocation: dict[str, Any] = {}
        self.log_lines: list[dict[str, Any]] = []
        self.override: Callable[[httpx.Request], httpx.Response] | None = None

    @property
    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self.requests]

    def body(self, method: str, path: str) -> Any:
        request = next(r for r in self.requests if (r.method, r.url.path) == (method, path))
        return request.content if path == "/v1/code" else json.loads(request.content)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            return self.override(request)
        method, parts = request.method, request.url.path.strip("/").split("/")
        if parts == ["v1", "code"]:
            return httpx.Response(201, json={"sha256": "cd" * 32, "size": 10, "files": 1})
        if parts == ["v1", "functions"]:
            return httpx.Response(200, json={"functions": list(self.functions.values())})
        if parts == ["v1", "runtimes"]:
            return httpx.Response(200, json={"runtimes": [{"name": "python3.11", "kind": "python", "version": "3.11.7"}]})  # fmt: skip
        name = parts[2]
        if len(parts) == 4 and parts[3] == "invocations":
            return httpx.Response(200, json=self.invocation)
        if len(parts) == 4 and parts[3] == "logs":
            content = "".join(json.dumps(line) + "\n" for line in self.log_lines)
            if request.url.params.get("follow") == "true":
                return httpx.Response(200, stream=_InterruptedStream(content.encode()))
            return httpx.Response(200, json={"lines": self.log_lines})
        if method == "PUT":
            fn = {**FUNCTION, **json.loads(request.content), "name": name}
            self.functions[name] = fn
            return httpx.Response(201, json=fn)
        if name not in self.functions:
            return _error(404, "Function.NotFound", f"function {name!r} does not exist")
        if method == "PATCH":
            fn = self.functions[name]
            fn.update(json.loads(request.content), revision=fn["revision"] + 1)
        if method == "DELETE":
            del self.functions[name]
            return httpx.Response(204)
        return httpx.Response(200, json=self.functions[name])


class _InterruptedStream(httpx.SyncByteStream):
    """A --follow stream: the backlog, then the user presses Ctrl-C."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __iter__(self) -> Iterator[bytes]:
        yield self.content
        raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("NIMBUS_URL", "NIMBUS_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIMBUS_CONFIG", str(tmp_path / "config.json"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNimbus:
    server = FakeNimbus()

    def make_client(target: context.Target) -> NimbusClient:
        return NimbusClient(target.url, target.token, transport=httpx.MockTransport(server.handle))

    monkeypatch.setattr(context, "make_client", make_client)
    return server


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


def auth(request: httpx.Request) -> tuple[str, str]:
    return str(request.url.copy_with(path="/")), request.headers.get("authorization", "")


# -- where the server and key come from ------------------------------------------------


def test_url_and_token_resolution_order(fake: FakeNimbus, monkeypatch: pytest.MonkeyPatch) -> None:
    context.save_config(Path(os.environ["NIMBUS_CONFIG"]), "http://config:1", "from-config")
    assert run("list").exit_code == 0
    monkeypatch.setenv("NIMBUS_URL", "http://env:2")
    monkeypatch.setenv("NIMBUS_TOKEN", "from-env")
    assert run("list").exit_code == 0
    assert run("list", "--url", "http://flag:3", "--token", "from-flag").exit_code == 0
    assert run("--url", "http://global:4", "--token", "g", "list").exit_code == 0
    assert [auth(r) for r in fake.requests] == [
        ("http://config:1/", "Bearer from-config"),
        ("http://env:2/", "Bearer from-env"),
        ("http://flag:3/", "Bearer from-flag"),
        ("http://global:4/", "Bearer g"),
    ]


def test_missing_token_is_a_usage_error(fake: FakeNimbus) -> None:
    result = run("list")
    assert result.exit_code == 2
    assert "nimbus login" in result.stderr and "NIMBUS_TOKEN" in result.stderr
    assert fake.requests == []


def test_login_verifies_then_saves_with_mode_0600(fake: FakeNimbus) -> None:
    result = run("login", "--url", "http://srv:9", "--token", "k1")
    assert result.exit_code == 0, result.output
    assert fake.calls == [("GET", "/v1/functions")]
    path = Path(os.environ["NIMBUS_CONFIG"])
    assert json.loads(path.read_text()) == {"url": "http://srv:9", "token": "k1"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "verified" in result.stdout


def test_login_with_a_rejected_key_saves_nothing(fake: FakeNimbus) -> None:
    fake.override = lambda request: _error(401, "Auth.Unauthorized", "unknown API key")
    result = run("login", "--url", "http://srv:9", "--token", "bad")
    assert result.exit_code == 1
    assert "Auth.Unauthorized" in result.stderr
    assert not Path(os.environ["NIMBUS_CONFIG"]).exists()


# -- deploy and update ------------------------------------------------------------------


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("def handler(event, context):\n    return event\n")
    return src


def test_deploy_creates_a_new_function(
    fake: FakeNimbus, code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    result = run(
        "deploy", str(code_dir), "--name", "hello", "--runtime", "python3.11",
        "--handler", "app.handler", "--memory", "256", "--env", "A=1", "-e", "B=x=y",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fake.calls == [
        ("GET", "/v1/functions/hello"),
        ("PUT", "/v1/code"),
        ("PUT", "/v1/functions/hello"),
    ]
    assert fake.requests[1].headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(fake.body("PUT", "/v1/code"))) as zf:
        assert zf.namelist() == ["app.py"]
    assert fake.body("PUT", "/v1/functions/hello") == {
        "runtime": "python3.11",
        "handler": "app.handler",
        "code_sha256": "cd" * 32,
        "memory_mb": 256,
        "env": {"A": "1", "B": "x=y"},
    }
    assert result.stdout.startswith("created hello · python3.11 · revision 1")


def test_deploy_to_an_existing_function_updates_only_the_code(
    fake: FakeNimbus, code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    fake.functions["hello"] = dict(FUNCTION)
    result = run("deploy", str(code_dir), "--name", "hello")
    assert result.exit_code == 0, result.output
    assert fake.calls == [
        ("GET", "/v1/functions/hello"),
        ("PUT", "/v1/code"),
        ("PATCH", "/v1/functions/hello"),
    ]
    assert fake.body("PATCH", "/v1/functions/hello") == {"code_sha256": "cd" * 32}
    assert "updated hello" in result.stdout and "revision 2" in result.stdout


def test_deploy_of_a_new_function_needs_runtime_and_handler(
    fake: FakeNimbus, code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    result = run("deploy", str(code_dir), "--name", "hello", "--runtime", "python3.11")
    assert result.exit_code == 2
    assert "--handler" in result.stderr
    assert fake.calls == [("GET", "/v1/functions/hello")]  # nothing uploaded


def test_deploy_streams_a_large_zip_as_is(
    fake: FakeNimbus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    fake.functions["hello"] = dict(FUNCTION)
    package = tmp_path / "big.zip"
    with zipfile.ZipFile(package, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("blob.bin", os.urandom(3 * 1024 * 1024))
    result = run("deploy", str(package), "--name", "hello", "--timeout", "7")
    assert result.exit_code == 0, result.output
    assert fake.body("PUT", "/v1/code") == package.read_bytes()
    assert fake.body("PATCH", "/v1/functions/hello") == {"code_sha256": "cd" * 32, "timeout_s": 7}


def test_update_patches_only_the_given_settings(
    fake: FakeNimbus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    fake.functions["hello"] = dict(FUNCTION)
    result = run("update", "hello", "--memory", "512", "--timeout", "10", "--env", "K=V")
    assert result.exit_code == 0, result.output
    assert fake.calls == [("PATCH", "/v1/functions/hello")]
    assert fake.body("PATCH", "/v1/functions/hello") == {
        "memory_mb": 512,
        "timeout_s": 10,
        "env": {"K": "V"},
    }
    assert run("update", "hello").exit_code == 2
    assert run("update", "hello", "--env", "novalue").exit_code == 2


def test_list_show_delete(fake: FakeNimbus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    fake.functions["hello"] = dict(FUNCTION)
    listed = run("list")
    assert listed.exit_code == 0 and "hello" in listed.stdout and "python3.11" in listed.stdout
    shown = run("show", "hello", "--json")
    assert json.loads(shown.stdout)["handler"] == "app.handler"
    assert run("delete", "hello", input="n\n").exit_code == 1
    assert "hello" in fake.functions
    assert run("delete", "hello", "--yes").exit_code == 0
    assert fake.calls[-1] == ("DELETE", "/v1/functions/hello")
    missing = run("show", "hello")
    assert missing.exit_code == 1
    assert "error: Function.NotFound: function 'hello' does not exist" in missing.stderr


# -- invoke -------------------------------------------------------------------------------

SUCCEEDED = {
    "request_id": "req-1",
    "function_name": "hello",
    "version": "$LATEST",
    "status": "succeeded",
    "result": {"greeting": "hi"},
    "cold_start": True,
    "duration_ms": 12.34,
    "billed_duration_ms": 13,
    "init_duration_ms": None,
}


def test_invoke_prints_the_result_and_timing(
    fake: FakeNimbus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    fake.invocation = {**SUCCEEDED, "log_tail": "START\nhello from the handler\n"}
    result = run("invoke", "hello", "--data", '{"name": "x"}', "--log-tail")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"greeting": "hi"}
    assert "request req-1 · 12.3 ms (billed 13 ms) · cold start" in result.stderr
    assert "hello from the handler" in result.stderr
    request = fake.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/functions/hello/invocations")
    assert json.loads(request.content) == {"name": "x"}
    assert request.headers["x-nimbus-log-type"] == "Tail"


def test_invoke_reports_a_function_error_with_exit_code_1(
    fake: FakeNimbus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    error = {"errorType": "ValueError", "errorMessage": "bad input", "stackTrace": ["  File x"]}
    fake.invocation = {**SUCCEEDED, "status": "failed", "result": None, "error": error}
    result = run("invoke", "hello")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "ValueError: bad input" in result.stderr and "  File x" in result.stderr
    assert json.loads(fake.requests[0].content) == {}
    raw = run("invoke", "hello", "--raw")
    assert raw.exit_code == 1 and json.loads(raw.stdout)["error"] == error


def test_invoke_validates_the_event_locally(
    fake: FakeNimbus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    result = run("invoke", "hello", "--data", "{not json")
    assert result.exit_code == 2
    assert "--data is not valid JSON" in result.stderr
    assert run("invoke", "hello", "--data", "1", "--file", "x.json").exit_code == 2
    assert fake.requests == []
    fake.invocation = SUCCEEDED
    event = tmp_path / "event.json"
    event.write_text("[1, 2]")
    assert run("invoke", "hello", "--file", str(event)).exit_code == 0
    assert run("invoke", "hello", "--data", "-", input='"from stdin"').exit_code == 0
    assert [json.loads(r.content) for r in fake.requests] == [[1, 2], "from stdin"]


def test_unreachable_server_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(
        context,
        "make_client",
        lambda t: NimbusClient(t.url, t.token, transport=httpx.MockTransport(refuse)),
    )
    result = run("invoke", "hello", "--token", "t", "--url", "http://down:1")
    assert result.exit_code == 1
    assert "cannot reach the Nimbus server at http://down:1" in result.stderr


# -- logs ---------------------------------------------------------------------------------

LINE_KEYS = ("ts", "request_id", "stream", "message", "instance_id")
LINES: list[dict[str, Any]] = [
    dict(zip(LINE_KEYS, (1714564800.5, "req-1", "stdout", "hello\n", "i-1"), strict=True)),
    dict(zip(LINE_KEYS, (1714564801.0, None, "platform", "instance started", "i-1"), strict=True)),
]


def test_logs_prints_one_line_per_entry(fake: FakeNimbus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    fake.log_lines = LINES
    result = run("logs", "hello", "--request-id", "req-1", "--limit", "5", "--since", "60")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [format_line(LogLine(**line)) for line in LINES]
    assert result.stdout.splitlines()[0].endswith(" req-1 stdout   hello")
    params = fake.requests[0].url.params
    assert (params["request_id"], params["limit"]) == ("req-1", "5")
    assert "follow" not in params and float(params["since"]) > 0


def test_logs_follow_streams_until_ctrl_c(
    fake: FakeNimbus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    fake.log_lines = LINES
    result = run("logs", "hello", "--follow")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
    assert "instance started" in result.stdout
    assert fake.requests[0].url.params["follow"] == "true"


def test_parse_since() -> None:
    assert parse_since("90", now=1000.0) == 910.0
    assert parse_since("15m", now=1000.0) == 100.0
    assert parse_since("2024-05-01T12:00:00+00:00", now=0.0) == 1714564800.0
    with pytest.raises(context.CliError):
        parse_since("yesterday", now=0.0)


def test_serve_builds_settings_from_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[Any] = []
    monkeypatch.setitem(sys.modules, "nimbus.server", SimpleNamespace(serve_forever=started.append))
    result = run("serve", "--port", "9001", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.host, settings.port) == ("127.0.0.1", 9001)
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert run("serve", "--port", "70000").exit_code == 2
