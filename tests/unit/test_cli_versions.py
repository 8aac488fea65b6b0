"""Versions, aliases, reserved concurrency, provisioned instances and qualified invocation:
the client and the CLI against an httpx.MockTransport (paths, bodies, output, errors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from nimbus.cli import context
from nimbus.cli.aliases import parse_weights
from nimbus.cli.context import CliError
from nimbus.cli.main import app
from nimbus.client import Alias, Function, NimbusClient, Provisioned, ProvisionedVersion

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
    "version": "$LATEST",
    "revision": 2,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}
#: FunctionOut fields a server without versions does not send.
NEW_FIELDS = ("network", "reserved_concurrency", "version")
V3 = {**HEAD, "version": "3", "code_sha256": "cd" * 32, "description": "first release"}
V4 = {**HEAD, "version": "4", "code_sha256": "ef" * 32, "memory_mb": 256}
PROD = {
    "name": "prod",
    "function": "hello",
    "version": 3,
    "weights": {"4": 0.1},
    "description": "production",
    "revision": 2,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-02T08:30:00Z",
}
PROVISIONED = {
    "qualifier": "prod",
    "requested": 10,
    "ready": 7,
    "versions": {"3": {"wanted": 9, "ready": 6}, "4": {"wanted": 1, "ready": 1}},
}
INVOCATION = {
    "request_id": "req-1",
    "function_name": "hello",
    "version": "4",
    "status": "succeeded",
    "result": {"ok": True},
    "cold_start": False,
    "duration_ms": 1.5,
    "billed_duration_ms": 2,
    "init_duration_ms": None,
}

Handler = Callable[[httpx.Request], httpx.Response]


def _error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


class FakeApi:
    """Answers from a table of ``(method, path) → response``; records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], httpx.Response | Handler] = {}

    def on(self, method: str, path: str, answer: httpx.Response | Handler) -> None:
        self.routes[(method, path)] = answer

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
    return fake


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


# ---- the client ----------------------------------------------------------------------


def test_function_loads_the_new_fields_and_tolerates_servers_without_them(api: FakeApi) -> None:
    api.on(
        "GET",
        "/v1/functions/hello",
        httpx.Response(200, json={**HEAD, "network": "egress", "reserved_concurrency": 5}),
    )
    before_versions = {k: v for k, v in HEAD.items() if k not in NEW_FIELDS}
    api.on("GET", "/v1/functions/old", httpx.Response(200, json=before_versions))
    with api.client() as client:
        head = client.get_function("hello")
        old = client.get_function("old")
    assert (head.version, head.network, head.reserved_concurrency) == ("$LATEST", "egress", 5)
    assert (old.version, old.network, old.reserved_concurrency) == ("$LATEST", "none", None)


def test_client_publish_tells_new_from_existing_versions(api: FakeApi) -> None:
    answers = iter([httpx.Response(201, json=V3), httpx.Response(200, json=V3)])
    api.on("POST", "/v1/functions/hello/versions", lambda request: next(answers))
    with api.client() as client:
        assert client.publish_version("hello", "first release", prewarm=True) == (
            Function(**V3),
            True,
        )
        version, created = client.publish_version("hello")
    assert (version.version, created) == ("3", False)
    assert api.body(0) == {"description": "first release", "prewarm": True}
    assert api.body(1) == {"prewarm": False}


def test_client_aliases_concurrency_and_provisioned_paths_and_bodies(api: FakeApi) -> None:
    base = "/v1/functions/hello"
    api.on("PUT", f"{base}/aliases/prod", httpx.Response(201, json=PROD))
    api.on("GET", f"{base}/aliases", httpx.Response(200, json={"aliases": [PROD]}))
    api.on("DELETE", f"{base}/aliases/prod", httpx.Response(204))
    api.on("PUT", f"{base}/concurrency", httpx.Response(200, json={"reserved": 5}))
    api.on("DELETE", f"{base}/concurrency", httpx.Response(204))
    api.on("PUT", f"{base}/provisioned/prod", httpx.Response(200, json=PROVISIONED))
    api.on("GET", f"{base}/provisioned", httpx.Response(200, json={"provisioned": [PROVISIONED]}))
    api.on("DELETE", f"{base}/provisioned/3", httpx.Response(204))
    api.on("GET", f"{base}/versions", httpx.Response(200, json={"versions": [V3, V4]}))
    api.on("GET", f"{base}/versions/4", httpx.Response(200, json=V4))
    api.on("DELETE", f"{base}/versions/4", httpx.Response(204))
    with api.client() as client:
        alias, created = client.put_alias("hello", "prod", 3, {4: 0.1}, "production")
        assert created and alias.weights == {4: 0.1} and alias.routing == {3: 0.9, 4: 0.1}
        assert api.body() == {"version": 3, "weights": {"4": 0.1}, "description": "production"}
        assert client.list_aliases("hello") == [alias]
        client.delete_alias("hello", "prod")
        assert client.set_concurrency("hello", 5) == 5
        assert api.body() == {"reserved": 5}
        client.delete_concurrency("hello")
        status = client.set_provisioned("hello", "prod", 10)
        assert api.body() == {"count": 10}
        assert status.versions["4"] == ProvisionedVersion(wanted=1, ready=1)
        assert client.list_provisioned("hello") == [status]
        client.delete_provisioned("hello", "3")
        assert [v.version for v in client.list_versions("hello")] == ["3", "4"]
        assert client.get_version("hello", 4).memory_mb == 256
        client.delete_version("hello", 4)
    assert [method for method, _ in api.calls] == [
        "PUT", "GET", "DELETE", "PUT", "DELETE", "PUT", "GET", "DELETE", "GET", "GET", "DELETE",
    ]  # fmt: skip


def test_client_invoke_sends_the_qualifier_as_a_query_parameter(api: FakeApi) -> None:
    api.on("POST", "/v1/functions/hello/invocations", httpx.Response(200, json=INVOCATION))
    with api.client() as client:
        assert client.invoke("hello", {}, qualifier="prod").version == "4"
        client.invoke("hello", {})
    assert api.requests[0].url.params["qualifier"] == "prod"
    assert "qualifier" not in api.requests[1].url.params


def test_alias_from_json_rejects_weights_that_are_not_numbers() -> None:
    assert Alias.from_json({**PROD, "weights": {}}).routing == {3: 1.0}
    with pytest.raises(Exception, match="weights"):
        Alias.from_json({**PROD, "weights": {"four": "x"}})
    assert Provisioned.from_json({**PROVISIONED, "versions": {}}).versions == {}


# ---- nimbus publish / versions / version ---------------------------------------------


def test_publish_prints_the_version_and_whether_it_is_new(api: FakeApi) -> None:
    answers = iter([httpx.Response(201, json=V3), httpx.Response(200, json=V3)])
    api.on("POST", "/v1/functions/hello/versions", lambda request: next(answers))
    new = run("publish", "hello", "--description", "first release", "--prewarm")
    assert new.exit_code == 0, new.output
    assert new.stdout.strip() == "published hello version 3 (new) · prewarming one instance"
    assert api.body() == {"description": "first release", "prewarm": True}
    same = run("publish", "hello", "--json")
    assert same.exit_code == 0, same.output
    data = json.loads(same.stdout)
    assert (data["version"], data["created"]) == ("3", False)


def test_publish_reports_server_errors(api: FakeApi) -> None:
    api.on(
        "POST",
        "/v1/functions/nope/versions",
        _error(404, "Function.NotFound", "function 'nope' does not exist"),
    )
    result = run("publish", "nope")
    assert result.exit_code == 1
    assert "error: Function.NotFound: function 'nope' does not exist" in result.stderr


def test_versions_lists_a_table_and_json(api: FakeApi) -> None:
    api.on("GET", "/v1/functions/hello/versions", httpx.Response(200, json={"versions": [V3, V4]}))
    result = run("versions", "hello")
    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.strip().splitlines()
    assert header.split() == ["VERSION", "CODE", "MEMORY", "TIMEOUT", "DESCRIPTION", "CREATED"]
    assert first.split()[:2] == ["3", "cd" * 6] and "first release" in first
    assert second.split()[:4] == ["4", "ef" * 6, "256", "MB"]
    listed = run("version", "list", "hello", "--json")
    assert [v["version"] for v in json.loads(listed.stdout)] == ["3", "4"]
    api.on("GET", "/v1/functions/hello/versions", httpx.Response(200, json={"versions": []}))
    empty = run("versions", "hello")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert "nimbus publish hello" in empty.stderr


def test_version_show_and_delete(api: FakeApi) -> None:
    api.on("GET", "/v1/functions/hello/versions/3", httpx.Response(200, json=V3))
    shown = run("version", "show", "hello", "3")
    assert shown.exit_code == 0, shown.output
    assert "version               3" in shown.stdout and "first release" in shown.stdout
    api.on(
        "DELETE",
        "/v1/functions/hello/versions/3",
        _error(
            409,
            "Function.VersionInUse",
            "alias 'prod' points to version 3; move or delete it first",
        ),
    )
    assert run("version", "delete", "hello", "3", input="n\n").exit_code == 1
    assert api.calls == [("GET", "/v1/functions/hello/versions/3")]  # declined: nothing sent
    in_use = run("version", "delete", "hello", "3", "--yes")
    assert in_use.exit_code == 1
    assert "error: Function.VersionInUse: alias 'prod' points to version 3" in in_use.stderr
    api.on("DELETE", "/v1/functions/hello/versions/3", httpx.Response(204))
    assert run("version", "delete", "hello", "3", "-y").stdout.strip() == "deleted hello version 3"
    assert run("version", "delete", "hello", "0", "-y").exit_code == 2


# ---- nimbus alias ----------------------------------------------------------------------


def test_parse_weights_turns_percentages_into_weights() -> None:
    assert parse_weights([], 3) == {}
    assert parse_weights(["4=10"], 3) == {4: 0.1}
    assert parse_weights([" 4 = 2.5% "], 3) == {4: 0.025}
    assert parse_weights(["4=10", "5=20"], 3) == {4: 0.1, 5: 0.2}  # the server allows one


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["4"], "must look like OTHER=PERCENT"),
        (["=10"], "must look like OTHER=PERCENT"),
        (["4="], "must look like OTHER=PERCENT"),
        (["x=10"], "not a version number"),
        (["0=10"], "not a version number"),
        (["-1=10"], "not a version number"),
        (["4=ten"], "not a percentage"),
        (["4=0"], "above 0 and below 100"),
        (["4=100"], "above 0 and below 100"),
        (["4=-5"], "above 0 and below 100"),
        (["4=0.1", "4=0.2"], "twice"),
        (["3=10"], "main version"),
        (["4=60", "5=40"], "100 %"),
    ],
)
def test_parse_weights_refuses_bad_input(pairs: list[str], message: str) -> None:
    with pytest.raises(CliError, match=message) as caught:
        parse_weights(pairs, 3)
    assert caught.value.exit_code == 2


def test_alias_set_sends_the_routing_and_keeps_the_description(api: FakeApi) -> None:
    path = "/v1/functions/hello/aliases/prod"
    api.on("GET", path, httpx.Response(200, json=PROD))
    api.on("PUT", path, lambda r: httpx.Response(200, json={**PROD, **json.loads(r.content)}))
    moved = run("alias", "set", "hello", "prod", "3", "--weight", "4=10")
    assert moved.exit_code == 0, moved.output
    assert api.calls == [("GET", path), ("PUT", path)]
    assert api.body() == {"version": 3, "weights": {"4": 0.1}, "description": "production"}
    assert moved.stdout.strip() == "moved alias hello:prod → version 3 (90 %) · version 4 (10 %)"
    api.requests.clear()
    plain = run("alias", "set", "hello", "prod", "4", "--description", "")
    assert plain.exit_code == 0, plain.output
    assert api.calls == [("PUT", path)]  # --description given: no need to read it
    assert api.body() == {"version": 4, "weights": {}, "description": ""}
    assert plain.stdout.strip() == "moved alias hello:prod → version 4"


def test_alias_set_creates_a_new_alias(api: FakeApi) -> None:
    path = "/v1/functions/hello/aliases/canary"
    api.on("GET", path, _error(404, "Function.AliasNotFound", "function 'hello' has no alias"))
    api.on("PUT", path, httpx.Response(201, json={**PROD, "name": "canary", "weights": {}}))
    result = run("alias", "set", "hello", "canary", "3")
    assert result.exit_code == 0, result.output
    assert api.body() == {"version": 3, "weights": {}, "description": ""}
    assert result.stdout.strip() == "created alias hello:canary → version 3"


def test_alias_set_refuses_bad_input_before_sending_anything(api: FakeApi) -> None:
    for args in (
        ("hello", "prod", "3", "--weight", "4=150"),
        ("hello", "prod", "3", "--weight", "3=10"),
        ("hello", "prod", "0"),
        ("hello", "42", "3"),
        ("hello", "$LATEST", "3"),
    ):
        result = run("alias", "set", *args)
        assert result.exit_code == 2, args
    assert api.requests == []


def test_alias_set_reports_the_servers_refusal(api: FakeApi) -> None:
    path = "/v1/functions/hello/aliases/prod"
    api.on("GET", path, httpx.Response(200, json=PROD))
    api.on(
        "PUT", path, _error(404, "Function.VersionNotFound", "function 'hello' has no version 9")
    )
    result = run("alias", "set", "hello", "prod", "9")
    assert result.exit_code == 1
    assert "error: Function.VersionNotFound: function 'hello' has no version 9" in result.stderr


def test_alias_list_show_delete(api: FakeApi) -> None:
    base = "/v1/functions/hello/aliases"
    api.on("GET", base, httpx.Response(200, json={"aliases": [PROD]}))
    api.on("GET", f"{base}/prod", httpx.Response(200, json=PROD))
    api.on("DELETE", f"{base}/prod", httpx.Response(204))
    listed = run("alias", "list", "hello")
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.strip().splitlines()
    assert header.split() == ["ALIAS", "VERSION", "ROUTING", "DESCRIPTION", "UPDATED"]
    assert "version 3 (90 %) · version 4 (10 %)" in row and "2024-05-02 08:30:00" in row
    assert json.loads(run("alias", "list", "hello", "--json").stdout)[0]["weights"] == {"4": 0.1}
    shown = run("alias", "show", "hello", "prod")
    assert "alias        hello:prod" in shown.stdout and "production" in shown.stdout
    assert run("alias", "delete", "hello", "prod", input="n\n").exit_code == 1
    assert ("DELETE", f"{base}/prod") not in api.calls
    deleted = run("alias", "delete", "hello", "prod", "--yes")
    assert deleted.stdout.strip() == "deleted alias hello:prod"
    assert api.calls[-1] == ("DELETE", f"{base}/prod")


def test_alias_show_of_a_missing_alias(api: FakeApi) -> None:
    api.on(
        "GET",
        "/v1/functions/hello/aliases/nope",
        _error(404, "Function.AliasNotFound", "function 'hello' has no alias 'nope'"),
    )
    result = run("alias", "show", "hello", "nope")
    assert result.exit_code == 1
    assert "error: Function.AliasNotFound: function 'hello' has no alias 'nope'" in result.stderr


# ---- nimbus concurrency / provisioned -------------------------------------------------


def test_concurrency_set_and_delete(api: FakeApi) -> None:
    path = "/v1/functions/hello/concurrency"
    api.on("PUT", path, lambda r: httpx.Response(200, json=json.loads(r.content)))
    api.on("DELETE", path, httpx.Response(204))
    result = run("concurrency", "set", "hello", "5")
    assert result.exit_code == 0, result.output
    assert api.body() == {"reserved": 5}
    assert result.stdout.strip() == "hello · reserved concurrency 5"
    disabled = run("concurrency", "set", "hello", "0")
    assert "disabled" in disabled.stdout and "nimbus concurrency delete hello" in disabled.stderr
    assert run("concurrency", "delete", "hello").stdout.strip() == "hello · no reserved concurrency"
    assert api.calls[-1] == ("DELETE", path)
    assert run("concurrency", "set", "hello", "-1").exit_code == 2


def test_provisioned_set_list_delete(api: FakeApi) -> None:
    base = "/v1/functions/hello/provisioned"
    api.on("PUT", f"{base}/prod", httpx.Response(200, json=PROVISIONED))
    api.on("GET", base, httpx.Response(200, json={"provisioned": [
        PROVISIONED, {"qualifier": "2", "requested": 1, "ready": 0,
                      "versions": {"2": {"wanted": 1, "ready": 0}}},
    ]}))  # fmt: skip
    api.on("DELETE", f"{base}/prod", httpx.Response(204))
    result = run("provisioned", "set", "hello", "prod", "10")
    assert result.exit_code == 0, result.output
    assert api.body() == {"count": 10}
    assert result.stdout.strip() == "hello:prod · 10 provisioned · 7 ready now"
    listed = run("provisioned", "list", "hello")
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.stdout.strip().splitlines()]
    assert rows == [
        ["QUALIFIER", "REQUESTED", "VERSION", "WANTED", "READY"],
        ["prod", "10", "3", "9", "6"],
        ["prod", "10", "4", "1", "1"],
        ["2", "1", "2", "1", "0"],
    ]
    as_json = json.loads(run("provisioned", "list", "hello", "--json").stdout)
    assert as_json[0]["versions"]["3"] == {"wanted": 9, "ready": 6}
    deleted = run("provisioned", "delete", "hello", "prod")
    assert deleted.stdout.strip() == "removed provisioned instances of hello:prod"
    assert api.calls[-1] == ("DELETE", f"{base}/prod")


def test_provisioned_on_latest_is_refused_locally(api: FakeApi) -> None:
    result = run("provisioned", "set", "hello", "$LATEST", "2")
    assert result.exit_code == 2
    assert "publish a version" in result.stderr
    assert api.requests == []


# ---- nimbus invoke with a qualifier ----------------------------------------------------


def test_invoke_with_a_qualifier_prints_the_version_that_ran(api: FakeApi) -> None:
    api.on("POST", "/v1/functions/hello/invocations", httpx.Response(200, json=INVOCATION))
    for args in (("hello:prod",), ("hello", "--qualifier", "prod"), ("hello:prod", "-q", "prod")):
        result = run("invoke", *args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"ok": True}
        assert "· version 4 (alias prod)" in result.stderr
    assert {r.url.path for r in api.requests} == {"/v1/functions/hello/invocations"}
    assert [r.url.params["qualifier"] for r in api.requests] == ["prod"] * 3
    by_number = run("invoke", "hello:4")
    assert by_number.stderr.strip().endswith("· version 4")
    latest = {**INVOCATION, "version": "$LATEST"}
    api.on("POST", "/v1/functions/hello/invocations", httpx.Response(200, json=latest))
    plain = run("invoke", "hello")
    assert "qualifier" not in api.requests[-1].url.params
    assert plain.stderr.strip().endswith("· version $LATEST")


def test_invoke_refuses_conflicting_or_empty_qualifiers(api: FakeApi) -> None:
    for args in (("hello:prod", "-q", "3"), ("hello:",), (":prod",)):
        result = run("invoke", *args)
        assert result.exit_code == 2, args
    assert api.requests == []


def test_invoke_of_a_disabled_function_shows_retry_after(api: FakeApi) -> None:
    api.on(
        "POST",
        "/v1/functions/hello/invocations",
        _error(
            429,
            "Function.ReservedConcurrencyExceeded",
            "function 'hello' is disabled",
            **{"Retry-After": "60"},
        ),
    )
    result = run("invoke", "hello")
    assert result.exit_code == 1
    assert (
        "error: Function.ReservedConcurrencyExceeded: function 'hello' is disabled "
        "(retry after 60 s)" in result.stderr
    )


# ---- deploy --prewarm / --network, update --network, show ----------------------------


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("def handler(event, context):\n    return event\n")
    return src


def _code_routes(api: FakeApi) -> None:
    api.on(
        "PUT", "/v1/code", httpx.Response(201, json={"sha256": "cd" * 32, "size": 10, "files": 1})
    )


def test_deploy_new_function_with_prewarm_and_network(api: FakeApi, code_dir: Path) -> None:
    _code_routes(api)
    api.on("GET", "/v1/functions/hello", _error(404, "Function.NotFound", "no such function"))
    api.on(
        "PUT",
        "/v1/functions/hello",
        lambda r: httpx.Response(201, json={**HEAD, **json.loads(r.content), "revision": 1}),
    )
    result = run(
        "deploy", str(code_dir), "-n", "hello", "--runtime", "python3.11",
        "--handler", "app.handler", "--network", "egress", "--prewarm",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    put = api.requests[-1]
    assert (put.method, put.url.path, put.url.params["prewarm"]) == (
        "PUT",
        "/v1/functions/hello",
        "true",
    )
    assert json.loads(put.content)["network"] == "egress"
    assert result.stdout.strip().endswith("· prewarming one instance")


def test_deploy_existing_function_warns_that_prewarm_is_skipped(
    api: FakeApi, code_dir: Path
) -> None:
    _code_routes(api)
    api.on("GET", "/v1/functions/hello", httpx.Response(200, json=HEAD))
    api.on(
        "PATCH",
        "/v1/functions/hello",
        lambda r: httpx.Response(200, json={**HEAD, **json.loads(r.content), "revision": 3}),
    )
    result = run("deploy", str(code_dir), "-n", "hello", "--prewarm", "--network", "none")
    assert result.exit_code == 0, result.output
    patch = api.requests[-1]
    assert "prewarm" not in patch.url.params
    assert json.loads(patch.content) == {"code_sha256": "cd" * 32, "network": "none"}
    assert (
        "--prewarm skipped" in result.stderr and "nimbus publish hello --prewarm" in result.stderr
    )
    assert "prewarming" not in result.stdout


def test_network_must_be_none_or_egress(api: FakeApi, code_dir: Path) -> None:
    assert run("deploy", str(code_dir), "-n", "hello", "--network", "open").exit_code == 2
    assert run("update", "hello", "--network", "host").exit_code == 2
    assert api.requests == []
    api.on("PATCH", "/v1/functions/hello", httpx.Response(200, json=HEAD))
    assert run("update", "hello", "--network", "egress").exit_code == 0
    assert api.body() == {"network": "egress"}


def test_show_displays_version_reserved_concurrency_and_network(api: FakeApi) -> None:
    api.on(
        "GET",
        "/v1/functions/hello",
        httpx.Response(
            200,
            json={
                **HEAD,
                "network": "egress",
                "reserved_concurrency": 0,
            },
        ),
    )
    result = run("show", "hello")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "version               $LATEST" in lines
    assert "reserved concurrency  0 (disabled: every call answers 429)" in lines
    assert "network               egress" in lines
    shown = json.loads(run("show", "hello", "--json").stdout)
    assert (shown["version"], shown["reserved_concurrency"]) == ("$LATEST", 0)
