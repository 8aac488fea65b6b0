"""Asynchronous invocation in the client and the CLI, against an httpx.MockTransport:
``invoke --async | --dry-run``, ``invocation show [--wait]``, ``dead-letters list |
redrive``, and the asynchronous settings of ``deploy``, ``update`` and ``show``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from nimbus.cli import context, invocations
from nimbus.cli.invocations import (
    format_max_age,
    parse_max_age,
    status_line,
    wait_until_done,
)
from nimbus.cli.main import app
from nimbus.client import (
    ApiError,
    AsyncInvocation,
    Function,
    FunctionError,
    FunctionSpec,
    NimbusClient,
    NimbusClientError,
)

ID = "6f1c0a2e-4b1d-4c8e-9a51-0d2e7f3b9c14"
OTHER_ID = "0b9e2c6d-1f3a-4d7e-8b2c-5a6e7f8d9c01"
INVOKE_PATH = "/v1/functions/hello/invocations"
HEAD: dict[str, Any] = {
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
    "network": "none",
    "secret_env_keys": [],
    "reserved_concurrency": None,
    "async_max_attempts": 2,
    "async_max_age_s": 3600,
    "on_success": "audit",
    "on_failure": None,
    "version": "$LATEST",
    "revision": 2,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}
ASYNC_FIELDS = ("async_max_attempts", "async_max_age_s", "on_success", "on_failure")
TRACE = ['  File "/var/task/app.py", line 3, in handler\n    raise RuntimeError("boom")\n']
BOOM = {"errorType": "RuntimeError", "errorMessage": "boom", "stackTrace": TRACE}
QUEUED: dict[str, Any] = {
    "request_id": ID,
    "function_name": "hello",
    "qualifier": None,
    "status": "queued",
    "attempts": 0,
    "max_attempts": 3,
    "created_at": 1_714_564_800.0,
    "finished_at": None,
    "next_attempt_at": 1_714_564_800.0,
    "result": None,
    "error": None,
    "dead_reason": None,
    "event": {"n": 1},
}
RETRYING = {**QUEUED, "attempts": 1, "error": BOOM, "next_attempt_at": 1_714_564_805.0}
RUNNING = {**QUEUED, "status": "running", "attempts": 2, "error": BOOM, "next_attempt_at": None}
SUCCEEDED = {
    **RUNNING,
    "status": "succeeded",
    "finished_at": 1_714_564_806.5,
    "result": {"ok": True},
}
FAILED = {
    **QUEUED,
    "qualifier": "prod",
    "status": "failed",
    "attempts": 3,
    "finished_at": 1_714_564_900.0,
    "next_attempt_at": None,
    "error": BOOM,
    "dead_reason": "attempts_exhausted",
}

Handler = Callable[[httpx.Request], httpx.Response]


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


class FakeApi:
    """Answers from a table of ``(method, path) → response``; records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], httpx.Response | Handler] = {}

    def on(self, method: str, path: str, answer: httpx.Response | Handler) -> None:
        self.routes[(method, path)] = answer

    def answers(self, method: str, path: str, *bodies: dict[str, Any]) -> None:
        """Answer 200 with each body in turn, then keep answering with the last one."""
        left: Iterator[dict[str, Any]] = iter(bodies)
        last: list[dict[str, Any]] = []

        def answer(request: httpx.Request) -> httpx.Response:
            last[:] = [next(left, last[0] if last else {})]
            return httpx.Response(200, json=last[0])

        self.on(method, path, answer)

    @property
    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self.requests]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return _error(404, "Route.NotFound", f"no route {request.url.path}")
        return answer(request) if callable(answer) else answer

    def client(self) -> NimbusClient:
        return NimbusClient("http://nimbus.test", "t", transport=httpx.MockTransport(self.handle))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApi:
    fake = FakeApi()

    def make_client(target: context.Target) -> NimbusClient:
        return NimbusClient(target.url, target.token, transport=httpx.MockTransport(fake.handle))

    for var in ("NIMBUS_URL", "NIMBUS_NAMESPACE", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIMBUS_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    monkeypatch.setattr(context, "make_client", make_client)
    # --wait polls without sleeping.
    monkeypatch.setattr(invocations, "POLL_FIRST_S", 0.0)
    monkeypatch.setattr(invocations, "POLL_MAX_S", 0.0)
    return fake


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


# ---- the client ----------------------------------------------------------------------


def test_function_loads_the_async_fields_and_defaults_them_for_older_servers(
    api: FakeApi,
) -> None:
    api.on("GET", "/v1/functions/hello", httpx.Response(200, json=HEAD))
    older = {k: v for k, v in HEAD.items() if k not in ASYNC_FIELDS}
    api.on("GET", "/v1/functions/old", httpx.Response(200, json=older))
    with api.client() as client:
        head = client.get_function("hello")
        old = client.get_function("old")
    assert (head.async_max_attempts, head.async_max_age_s) == (2, 3600)
    assert (head.on_success, head.on_failure) == ("audit", None)
    assert (old.async_max_attempts, old.async_max_age_s) == (3, 21600)
    assert (old.on_success, old.on_failure) == (None, None)


def test_function_spec_sends_only_the_async_settings_given() -> None:
    plain = FunctionSpec("python3.11", "app.handler", "ab" * 32)
    assert not set(ASYNC_FIELDS) & set(plain.to_json())
    spec = FunctionSpec(
        "python3.11",
        "app.handler",
        "ab" * 32,
        async_max_attempts=1,
        async_max_age_s=600,
        on_failure="dlq",
    )
    assert spec.to_json() == {
        "runtime": "python3.11",
        "handler": "app.handler",
        "code_sha256": "ab" * 32,
        "async_max_attempts": 1,
        "async_max_age_s": 600,
        "on_failure": "dlq",
    }


def test_client_invoke_async_sends_the_event_header_and_returns_the_request_id(
    api: FakeApi,
) -> None:
    queued = {"request_id": ID, "function_name": "hello", "status": "queued"}
    api.on("POST", INVOKE_PATH, httpx.Response(202, json=queued))
    with api.client() as client:
        assert client.invoke_async("hello", {"n": 1}) == ID
        assert client.invoke_async("hello", [1, 2], qualifier="prod") == ID
    first, second = api.requests
    assert first.headers["x-nimbus-invocation-type"] == "Event"
    assert first.headers["content-type"] == "application/json"
    assert json.loads(first.content) == {"n": 1} and "qualifier" not in first.url.params
    assert json.loads(second.content) == [1, 2] and second.url.params["qualifier"] == "prod"
    api.on("POST", INVOKE_PATH, httpx.Response(202, json={"status": "queued"}))
    with api.client() as client, pytest.raises(NimbusClientError, match="no request id"):
        client.invoke_async("hello", {})


def test_client_dry_run_runs_nothing_and_raises_when_refused(api: FakeApi) -> None:
    api.on("POST", INVOKE_PATH, httpx.Response(204))
    with api.client() as client:
        client.dry_run("hello", qualifier="3")
    request = api.requests[0]
    assert request.headers["x-nimbus-invocation-type"] == "DryRun"
    assert request.url.params["qualifier"] == "3"
    api.on("POST", INVOKE_PATH, _error(404, "Function.VersionNotFound", "no version 3"))
    with api.client() as client, pytest.raises(ApiError) as caught:
        client.dry_run("hello", qualifier="3")
    assert (caught.value.status, caught.value.code) == (404, "Function.VersionNotFound")


def test_client_get_invocation_reads_status_result_and_error(api: FakeApi) -> None:
    api.on("GET", f"/v1/invocations/{ID}", httpx.Response(200, json=SUCCEEDED))
    api.on("GET", f"/v1/invocations/{OTHER_ID}", httpx.Response(200, json=FAILED))
    with api.client() as client:
        done = client.get_invocation(ID)
        dead = client.get_invocation(OTHER_ID)
    assert done.done and done.succeeded and done.result == {"ok": True}
    # The last failure is kept after a retry succeeded.
    assert done.error == FunctionError("RuntimeError", "boom", TRACE)
    assert (done.attempts, done.max_attempts, done.finished_at) == (2, 3, 1_714_564_806.5)
    assert done.raw == SUCCEEDED
    assert dead.done and not dead.succeeded
    assert (dead.dead_reason, dead.qualifier, dead.event) == (
        "attempts_exhausted",
        "prod",
        {"n": 1},
    )
    assert not AsyncInvocation.from_json(QUEUED).done
    assert not AsyncInvocation.from_json(RUNNING).done
    # A newer server's extra fields are ignored.
    assert AsyncInvocation.from_json({**QUEUED, "shard": 7}).request_id == ID


def test_client_get_invocation_of_an_unknown_id(api: FakeApi) -> None:
    api.on("GET", f"/v1/invocations/{ID}", _error(404, "Invocation.NotFound", "no such id"))
    with api.client() as client, pytest.raises(ApiError) as caught:
        client.get_invocation(ID)
    assert caught.value.code == "Invocation.NotFound"


def test_client_dead_letters_and_redrive(api: FakeApi) -> None:
    base = "/v1/functions/hello/dead-letters"
    api.on("GET", base, httpx.Response(200, json={"dead_letters": [FAILED]}))
    api.on("POST", f"{base}/redrive", httpx.Response(200, json={"redriven": 1}))
    with api.client() as client:
        letters = client.list_dead_letters("hello", 10)
        assert [d.request_id for d in letters] == [ID]
        assert letters[0].error is not None and letters[0].error.error_type == "RuntimeError"
        assert api.requests[-1].url.params["limit"] == "10"
        assert client.list_dead_letters("hello") == letters
        assert api.requests[-1].url.params["limit"] == "100"
        assert client.redrive("hello") == 1
        assert api.body() == {"limit": 1000}
        assert client.redrive("hello", [ID, OTHER_ID]) == 1
        assert api.body() == {"limit": 1000, "request_ids": [ID, OTHER_ID]}
        assert client.redrive("hello", limit=5) == 1
        assert api.body() == {"limit": 5}


# ---- nimbus invoke --async / --dry-run -----------------------------------------------


def test_invoke_async_prints_the_request_id_and_how_to_follow_it(api: FakeApi) -> None:
    queued = {"request_id": ID, "function_name": "hello", "status": "queued"}
    api.on("POST", INVOKE_PATH, httpx.Response(202, json=queued))
    result = run("invoke", "hello:prod", "--async", "-d", '{"n": 1}')
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{ID}\n"  # alone on stdout: ID=$(nimbus invoke ... --async)
    assert f"queued for hello:prod · see it with `nimbus invocation show {ID}`" in result.stderr
    request = api.requests[0]
    assert request.headers["x-nimbus-invocation-type"] == "Event"
    assert request.url.params["qualifier"] == "prod"
    assert json.loads(request.content) == {"n": 1}


def test_invoke_async_reports_refusals(api: FakeApi) -> None:
    api.on(
        "POST",
        INVOKE_PATH,
        _error(413, "Request.PayloadTooLarge", "event is 300000 bytes; the limit is 262144"),
    )
    result = run("invoke", "hello", "--async")
    assert result.exit_code == 1
    assert "error: Request.PayloadTooLarge: event is 300000 bytes" in result.stderr
    assert result.stdout == ""


def test_invoke_dry_run(api: FakeApi) -> None:
    api.on("POST", INVOKE_PATH, httpx.Response(204))
    result = run("invoke", "hello", "-q", "3", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "hello:3 can be invoked with this key (dry run: nothing ran)"
    assert api.requests[0].headers["x-nimbus-invocation-type"] == "DryRun"
    api.on("POST", INVOKE_PATH, _error(403, "Auth.Forbidden", "this key may not invoke"))
    refused = run("invoke", "hello", "--dry-run")
    assert refused.exit_code == 1
    assert "error: Auth.Forbidden: this key may not invoke" in refused.stderr


def test_invoke_async_and_dry_run_refuse_options_that_need_a_result(api: FakeApi) -> None:
    for args in (
        ("--async", "--dry-run"),
        ("--async", "--raw"),
        ("--async", "--log-tail"),
        ("--dry-run", "--raw"),
        ("--async", "-d", "{not json"),
    ):
        result = run("invoke", "hello", *args)
        assert result.exit_code == 2, args
    assert api.requests == []


# ---- nimbus invocation show ------------------------------------------------------------


def test_invocation_show_of_a_success_after_a_retry(api: FakeApi) -> None:
    api.on("GET", f"/v1/invocations/{ID}", httpx.Response(200, json=SUCCEEDED))
    result = run("invocation", "show", ID)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"request id     {ID}"
    assert "status         succeeded" in lines
    assert "attempts       2 of 3" in lines
    assert 'event          {"n": 1}' in lines
    at = lines.index("result         {")
    assert lines[at + 1 : at + 3] == ['                 "ok": true', "               }"]
    assert "earlier error  RuntimeError: boom" in lines
    assert '                   raise RuntimeError("boom")' in lines


def test_invocation_show_of_a_failure_exits_1(api: FakeApi) -> None:
    api.on("GET", f"/v1/invocations/{ID}", httpx.Response(200, json=FAILED))
    result = run("invocation", "show", ID)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "function    hello:prod" in lines
    assert "status      failed (attempts_exhausted)" in lines
    assert "error       RuntimeError: boom" in lines
    assert not any(line.startswith("result") for line in lines)
    as_json = run("invocation", "show", ID, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout) == FAILED


def test_invocation_show_of_a_queued_retry(api: FakeApi) -> None:
    api.on("GET", f"/v1/invocations/{ID}", httpx.Response(200, json=RETRYING))
    result = run("invocation", "show", ID.upper())  # ids are not case-sensitive
    assert result.exit_code == 0, result.output
    assert api.calls == [("GET", f"/v1/invocations/{ID}")]
    assert "status        queued" in result.stdout
    assert "next attempt  " in result.stdout
    assert "error         RuntimeError: boom" in result.stdout


def test_invocation_show_wait_polls_until_done(api: FakeApi) -> None:
    api.answers("GET", f"/v1/invocations/{ID}", QUEUED, RETRYING, RETRYING, RUNNING, SUCCEEDED)
    result = run("invocation", "show", ID, "--wait")
    assert result.exit_code == 0, result.output
    assert len(api.requests) == 5
    assert "status         succeeded" in result.stdout
    progress = result.stderr.splitlines()
    assert progress[0] == f"waiting for {ID}: queued"
    assert progress[1].startswith("queued · attempt 1 of 3 failed (RuntimeError)")
    assert progress[2:] == ["running · attempt 2 of 3", "succeeded · attempt 2 of 3"]


def test_invocation_show_wait_of_a_failure_exits_1(api: FakeApi) -> None:
    api.answers("GET", f"/v1/invocations/{ID}", RUNNING, FAILED)
    result = run("invocation", "show", ID, "-w")
    assert result.exit_code == 1
    assert "status      failed (attempts_exhausted)" in result.stdout
    assert "failed after 3 attempts (attempts_exhausted)" in result.stderr


def test_invocation_show_wait_gives_up_after_the_timeout(api: FakeApi) -> None:
    api.on("GET", f"/v1/invocations/{ID}", httpx.Response(200, json=QUEUED))
    result = run("invocation", "show", ID, "--wait", "--timeout", "0")
    assert result.exit_code == 1
    assert "status        queued" in result.stdout
    assert "error: gave up waiting after 0 s: the invocation is still queued" in result.stderr


def test_invocation_show_refuses_bad_input_before_sending_anything(api: FakeApi) -> None:
    no_wait = run("invocation", "show", ID, "--timeout", "5")
    assert no_wait.exit_code == 2 and "--timeout only goes with --wait" in no_wait.stderr
    bad = run("invocation", "show", "req-1")
    assert bad.exit_code == 2 and "'req-1' is not a request id" in bad.stderr
    assert api.requests == []


def test_invocation_show_of_an_unknown_id(api: FakeApi) -> None:
    api.on(
        "GET",
        f"/v1/invocations/{ID}",
        _error(404, "Invocation.NotFound", f"no asynchronous invocation {ID!r}"),
    )
    result = run("invocation", "show", ID)
    assert result.exit_code == 1
    assert f"error: Invocation.NotFound: no asynchronous invocation '{ID}'" in result.stderr


def test_wait_until_done_backs_off_and_respects_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(invocations, "POLL_FIRST_S", 0.25)
    monkeypatch.setattr(invocations, "POLL_MAX_S", 2.0)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    queued = AsyncInvocation.from_json(QUEUED)
    seen: list[str] = []
    last = wait_until_done(
        lambda: queued,
        queued,
        timeout_s=5.0,
        sleep=sleep,
        clock=lambda: now[0],
        on_change=lambda inv: seen.append(inv.status),
    )
    assert last is queued and seen == []  # nothing changed, so nothing reported
    assert slept == [0.25, 0.5, 1.0, 2.0, 1.25]  # doubling to the cap, cut at the deadline
    states = iter([RETRYING, RUNNING, SUCCEEDED])
    slept.clear()
    done = wait_until_done(
        lambda: AsyncInvocation.from_json(next(states)),
        queued,
        timeout_s=None,
        sleep=sleep,
        clock=lambda: now[0],
        on_change=lambda inv: seen.append(inv.status),
    )
    assert done.succeeded and seen == ["queued", "running", "succeeded"]
    assert slept == [0.25, 0.5, 1.0]
    assert wait_until_done(lambda: done, done, timeout_s=None, sleep=sleep, clock=float) is done


def test_status_line() -> None:
    now = 1_714_564_800.0
    assert status_line(AsyncInvocation.from_json(QUEUED), now) == "queued"
    assert status_line(AsyncInvocation.from_json(RETRYING), now) == (
        "queued · attempt 1 of 3 failed (RuntimeError) · next attempt in 5.0 s"
    )
    assert status_line(AsyncInvocation.from_json(RUNNING), now) == "running · attempt 2 of 3"
    assert status_line(AsyncInvocation.from_json(FAILED), now) == (
        "failed after 3 attempts (attempts_exhausted)"
    )
    one = AsyncInvocation.from_json({**FAILED, "attempts": 1, "dead_reason": "age_exceeded"})
    assert status_line(one, now) == "failed after 1 attempt (age_exceeded)"


# ---- nimbus dead-letters ----------------------------------------------------------------


def test_dead_letters_list_prints_a_table_and_json(api: FakeApi) -> None:
    second = {**FAILED, "request_id": OTHER_ID, "qualifier": None, "attempts": 1}
    second["error"] = {**BOOM, "errorMessage": "x" * 100, "errorType": "ValueError"}
    path = "/v1/functions/hello/dead-letters"
    api.on("GET", path, httpx.Response(200, json={"dead_letters": [FAILED, second]}))
    result = run("dead-letters", "list", "hello")
    assert result.exit_code == 0, result.output
    header, first, other = result.stdout.strip().splitlines()
    assert header.split() == ["REQUEST", "ID", "QUALIFIER", "ATTEMPTS", "REASON", "ERROR", "FAILED"]
    assert first.split()[:6] == [ID, "prod", "3/3", "attempts_exhausted", "RuntimeError:", "boom"]
    assert other.split()[:3] == [OTHER_ID, "$LATEST", "1/3"]
    assert "ValueError: " + "x" * 47 + "…" in other  # long messages are cut
    assert api.requests[-1].url.params["limit"] == "100"
    listed = json.loads(run("dead-letters", "list", "hello", "--json").stdout)
    assert listed == [FAILED, second]
    capped = run("dead-letters", "list", "hello", "-n", "2")
    assert "showing the 2 oldest; there may be more" in capped.stderr
    assert api.requests[-1].url.params["limit"] == "2"
    api.on("GET", path, httpx.Response(200, json={"dead_letters": []}))
    empty = run("dead-letters", "list", "hello")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert "hello has no dead letters" in empty.stderr
    assert run("dead-letters", "list", "hello", "--limit", "1001").exit_code == 2


def test_dead_letters_redrive(api: FakeApi) -> None:
    path = "/v1/functions/hello/dead-letters/redrive"
    api.on("POST", path, httpx.Response(200, json={"redriven": 3}))
    result = run("dead-letters", "redrive", "hello")
    assert result.exit_code == 0, result.output
    assert api.body() == {"limit": 1000}
    assert result.stdout.strip() == "re-queued 3 dead letters of hello"
    assert "nimbus invocation show REQUEST_ID --wait" in result.stderr
    assert run("dead-letters", "redrive", "hello", "--limit", "10").exit_code == 0
    assert api.body() == {"limit": 10}
    api.on("POST", path, httpx.Response(200, json={"redriven": 1}))
    some = run("dead-letters", "redrive", "hello", "--id", ID, "--id", OTHER_ID.upper())
    assert some.exit_code == 0, some.output
    assert api.body() == {"limit": 1000, "request_ids": [ID, OTHER_ID]}
    assert some.stdout.strip() == "re-queued 1 dead letter of hello"
    assert "1 of the given ids were not dead letters of hello" in some.stderr


def test_dead_letters_redrive_refuses_bad_input_before_sending_anything(api: FakeApi) -> None:
    both = run("dead-letters", "redrive", "hello", "--id", ID, "--limit", "3")
    assert both.exit_code == 2 and "--id and --limit cannot be used together" in both.stderr
    bad = run("dead-letters", "redrive", "hello", "--id", "nope")
    assert bad.exit_code == 2 and "--id 'nope' is not a request id" in bad.stderr
    assert run("dead-letters", "redrive", "hello", "--limit", "0").exit_code == 2
    assert api.requests == []


def test_dead_letters_of_a_missing_function(api: FakeApi) -> None:
    api.on(
        "GET",
        "/v1/functions/nope/dead-letters",
        _error(404, "Function.NotFound", "function 'nope' does not exist"),
    )
    result = run("dead-letters", "list", "nope")
    assert result.exit_code == 1
    assert "error: Function.NotFound: function 'nope' does not exist" in result.stderr


# ---- deploy / update / show ----------------------------------------------------------


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("def handler(event, context):\n    return event\n")
    return src


def _echo(status: int, **extra: Any) -> Handler:
    return lambda r: httpx.Response(status, json={**HEAD, **json.loads(r.content), **extra})


def test_deploy_sends_the_async_settings(api: FakeApi, code_dir: Path) -> None:
    upload = {"sha256": "cd" * 32, "size": 10, "files": 1}
    api.on("PUT", "/v1/code", httpx.Response(201, json=upload))
    api.on("GET", "/v1/functions/hello", _error(404, "Function.NotFound", "no such function"))
    api.on("PUT", "/v1/functions/hello", _echo(201, revision=1))
    result = run(
        "deploy", str(code_dir), "-n", "hello", "--runtime", "python3.11",
        "--handler", "app.handler", "--async-max-attempts", "1", "--async-max-age", "2h",
        "--on-success", "audit", "--on-failure", "alerts",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "runtime": "python3.11",
        "handler": "app.handler",
        "code_sha256": "cd" * 32,
        "async_max_attempts": 1,
        "async_max_age_s": 7200,
        "on_success": "audit",
        "on_failure": "alerts",
    }
    api.on("GET", "/v1/functions/hello", httpx.Response(200, json=HEAD))
    api.on("PATCH", "/v1/functions/hello", _echo(200))
    again = run("deploy", str(code_dir), "-n", "hello", "--on-failure", "alerts")
    assert again.exit_code == 0, again.output
    assert api.body() == {"code_sha256": "cd" * 32, "on_failure": "alerts"}


def test_update_sets_and_clears_the_async_settings(api: FakeApi) -> None:
    api.on("PATCH", "/v1/functions/hello", _echo(200))
    result = run("update", "hello", "--async-max-attempts", "2", "--async-max-age", "90m")
    assert result.exit_code == 0, result.output
    assert api.body() == {"async_max_attempts": 2, "async_max_age_s": 5400}
    assert run("update", "hello", "--on-success", "audit", "--clear-on-failure").exit_code == 0
    # null is how PATCH removes a destination.
    assert api.body() == {"on_success": "audit", "on_failure": None}
    assert run("update", "hello", "--clear-on-success").exit_code == 0
    assert api.body() == {"on_success": None}
    assert run("update", "hello", "--async-max-age", "3600").exit_code == 0
    assert api.body() == {"async_max_age_s": 3600}


def test_update_refuses_bad_async_settings_before_sending_anything(api: FakeApi) -> None:
    for args in (
        ("--on-success", "audit", "--clear-on-success"),
        ("--on-failure", "x", "--clear-on-failure"),
        ("--on-success", ""),
        ("--async-max-age", "soon"),
        ("--async-max-age", "1.5h"),
        ("--async-max-attempts", "0"),
    ):
        result = run("update", "hello", *args)
        assert result.exit_code == 2, (args, result.output)
    empty = run("update", "hello", "--on-failure", " ")
    assert "--clear-on-failure" in empty.stderr
    assert api.requests == []


def test_update_leaves_range_checks_to_the_server(api: FakeApi) -> None:
    api.on(
        "PATCH",
        "/v1/functions/hello",
        _error(
            400,
            "Function.InvalidSetting",
            "async_max_attempts: Input should be less than or equal to 3",
        ),
    )
    result = run("update", "hello", "--async-max-attempts", "5")
    assert result.exit_code == 1
    assert "error: Function.InvalidSetting: async_max_attempts" in result.stderr


def test_show_displays_the_async_settings_of_the_head_only(api: FakeApi) -> None:
    api.on("GET", "/v1/functions/hello", httpx.Response(200, json=HEAD))
    result = run("show", "hello")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "async max attempts    2" in lines
    assert "async max age         3600 s (1 h)" in lines
    assert "on success            audit" in lines
    assert "on failure            -" in lines
    shown = json.loads(run("show", "hello", "--json").stdout)
    assert {k: shown[k] for k in ASYNC_FIELDS} == {k: HEAD[k] for k in ASYNC_FIELDS}
    # A version's snapshot does not decide how its events are retried: not shown.
    version = {**HEAD, "version": "3"}
    api.on("GET", "/v1/functions/hello/versions/3", httpx.Response(200, json=version))
    version_shown = run("version", "show", "hello", "3")
    assert version_shown.exit_code == 0, version_shown.output
    assert "async" not in version_shown.stdout and "on success" not in version_shown.stdout


def test_parse_and_format_max_age() -> None:
    assert parse_max_age("3600") == 3600
    assert parse_max_age(" 90m ") == 5400
    assert parse_max_age("6h") == 21600
    assert parse_max_age("75s") == 75
    for bad in ("", "h", "-5", "1.5h", "2d", "six hours"):
        with pytest.raises(Exception, match="neither whole seconds"):
            parse_max_age(bad)
    assert format_max_age(21600) == "21600 s (6 h)"
    assert format_max_age(5400) == "5400 s (90 min)"
    assert format_max_age(75) == "75 s"
    assert Function(**HEAD).async_max_age_s == 3600
