"""Triggers in the client and the CLI, against an httpx.MockTransport: ``nimbus trigger
add-timer | add-url | list | show | enable | disable | delete`` (paths, bodies, output,
errors)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from nimbus.cli import context
from nimbus.cli.context import CliError
from nimbus.cli.main import app
from nimbus.cli.triggers import fired_text, parse_payload
from nimbus.client import NimbusClient, Trigger

BASE = "/v1/functions/report/triggers"
MORNING: dict[str, Any] = {
    "name": "morning",
    "function": "report",
    "type": "timer",
    "qualifier": None,
    "enabled": True,
    "config": {
        "schedule": "0 9 * * *",
        "timezone": "Asia/Shanghai",
        "payload": {"report": "daily"},
        "catch_up": "latest",
    },
    "last_fired": "2024-05-02T01:00:00Z",
    "url": None,
    "status": None,
    "last_error": None,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}
URL: dict[str, Any] = {
    "name": "url",
    "function": "report",
    "type": "http",
    "qualifier": "prod",
    "enabled": True,
    "config": {"auth": "public"},
    "last_fired": None,
    "url": "http://nimbus.test/fn/default/report:prod/",
    "status": None,
    "last_error": None,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-03T08:30:00Z",
}

Handler = Callable[[httpx.Request], httpx.Response]


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def _echo_created(request: httpx.Request) -> httpx.Response:
    """Answers a create as the server does: the trigger, with the defaults filled in."""
    body = json.loads(request.content)
    config = dict(body["config"])
    if body["type"] == "timer":
        config = {"timezone": "UTC", "payload": {}, "catch_up": "latest", **config}
    url = "http://nimbus.test/fn/default/report" + (
        f":{body['qualifier']}/" if body.get("qualifier") else "/"
    )
    return httpx.Response(
        201,
        json={
            **MORNING,
            "name": body["name"],
            "type": body["type"],
            "qualifier": body.get("qualifier"),
            "enabled": body["enabled"],
            "config": config,
            "last_fired": None,
            "url": url if body["type"] == "http" else None,
        },
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


def test_client_trigger_paths_and_bodies(api: FakeApi) -> None:
    api.on("POST", BASE, _echo_created)
    api.on("GET", BASE, httpx.Response(200, json={"triggers": [MORNING, URL]}))
    api.on("GET", f"{BASE}/morning", httpx.Response(200, json=MORNING))
    api.on("PATCH", f"{BASE}/morning", httpx.Response(200, json={**MORNING, "enabled": False}))
    api.on("DELETE", f"{BASE}/morning", httpx.Response(204))
    with api.client() as client:
        timer = client.create_trigger("report", "nightly", "timer", {"schedule": "0 3 * * *"})
        assert api.body() == {
            "name": "nightly",
            "type": "timer",
            "enabled": True,
            "config": {"schedule": "0 3 * * *"},
        }
        assert timer.config["catch_up"] == "latest" and timer.qualifier is None
        url = client.create_trigger(
            "report", "url", "http", {"auth": "key"}, qualifier="prod", enabled=False
        )
        assert api.body() == {
            "name": "url",
            "type": "http",
            "enabled": False,
            "config": {"auth": "key"},
            "qualifier": "prod",
        }
        assert url.url == "http://nimbus.test/fn/default/report:prod/"
        assert client.list_triggers("report") == [Trigger(**MORNING), Trigger(**URL)]
        assert client.get_trigger("report", "morning") == Trigger(**MORNING)
        assert client.set_trigger_enabled("report", "morning", False).enabled is False
        assert api.body() == {"enabled": False}
        client.delete_trigger("report", "morning")
    assert api.calls == [
        ("POST", BASE),
        ("POST", BASE),
        ("GET", BASE),
        ("GET", f"{BASE}/morning"),
        ("PATCH", f"{BASE}/morning"),
        ("DELETE", f"{BASE}/morning"),
    ]


def test_client_quotes_trigger_names_in_paths(api: FakeApi) -> None:
    with api.client() as client, pytest.raises(Exception, match=r"Route\.NotFound"):
        client.get_trigger("report", "a/b")
    assert api.requests[0].url.raw_path == b"/v1/functions/report/triggers/a%2Fb"


def test_trigger_from_json_is_tolerant() -> None:
    newer = Trigger.from_json({**MORNING, "next_tick": "2024-05-03T01:00:00Z", "owner": "x"})
    assert newer == Trigger(**MORNING)
    minimal = Trigger.from_json({"name": "t", "function": "f", "type": "timer", "config": None})
    assert minimal == Trigger(name="t", function="f", type="timer")
    assert (minimal.enabled, minimal.config, minimal.url, minimal.last_fired) == (
        True,
        {},
        None,
        None,
    )
    with pytest.raises(Exception, match="Trigger"):
        Trigger.from_json({"name": "t"})


# ---- --payload -----------------------------------------------------------------------


def test_parse_payload_reads_json_a_file_or_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_payload('{"report": "daily"}') == {"report": "daily"}
    assert parse_payload("[1, 2]") == [1, 2]
    assert parse_payload("null") is None
    file = tmp_path / "payload.json"
    file.write_text('{"from": "file"}', encoding="utf-8")
    assert parse_payload(f"@{file}") == {"from": "file"}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    assert parse_payload("@-") == {"from": "stdin"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{report: 1}", "--payload is not valid JSON"),
        ("", "--payload is not valid JSON"),
        ("@", "needs a file name"),
        ("@/nonexistent/payload.json", "cannot read --payload @/nonexistent"),
    ],
)
def test_parse_payload_refuses_bad_input(text: str, message: str) -> None:
    with pytest.raises(CliError, match=message) as caught:
        parse_payload(text)
    assert caught.value.exit_code == 2


def test_parse_payload_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    file = tmp_path / "payload.json"
    file.write_text("report: daily", encoding="utf-8")
    with pytest.raises(CliError, match=rf"--payload @{file} is not valid JSON"):
        parse_payload(f"@{file}")


# ---- nimbus trigger add-timer --------------------------------------------------------


def test_add_timer_sends_the_schedule_and_prints_a_summary(api: FakeApi) -> None:
    api.on("POST", BASE, _echo_created)
    result = run(
        "trigger", "add-timer", "report", "morning", "--schedule", "0 9 * * *",
        "--timezone", "Asia/Shanghai", "--payload", '{"report": "daily"}',
        "--catch-up", "all", "--qualifier", "prod",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "name": "morning",
        "type": "timer",
        "enabled": True,
        "qualifier": "prod",
        "config": {
            "schedule": "0 9 * * *",
            "timezone": "Asia/Shanghai",
            "payload": {"report": "daily"},
            "catch_up": "all",
        },
    }
    assert result.stdout.strip() == (
        "created timer trigger report/morning · 0 9 * * * (Asia/Shanghai) · catch-up all "
        "→ report:prod"
    )
    assert result.stderr == ""


def test_add_timer_leaves_defaults_to_the_server_and_can_start_disabled(api: FakeApi) -> None:
    api.on("POST", BASE, _echo_created)
    result = run("trigger", "add-timer", "report", "tick", "-s", "rate(5 minutes)", "--disabled")
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "name": "tick",
        "type": "timer",
        "enabled": False,
        "config": {"schedule": "rate(5 minutes)"},
    }
    assert "rate(5 minutes) (UTC) · catch-up latest → report" in result.stdout
    assert "enable it with `nimbus trigger enable report tick`" in result.stderr
    as_json = run("trigger", "add-timer", "report", "tick", "-s", "* * * * *", "--json")
    assert json.loads(as_json.stdout)["config"]["timezone"] == "UTC"


def test_add_timer_refuses_bad_input_before_sending_anything(api: FakeApi) -> None:
    bad_json = run("trigger", "add-timer", "report", "t", "-s", "* * * * *", "-p", "{oops}")
    assert bad_json.exit_code == 2
    assert "error: --payload is not valid JSON" in bad_json.stderr
    for args in (
        ("report", "t", "-s", "* * * * *", "--catch-up", "sometimes"),
        ("report", "t", "-s", "* * * * *", "--payload", "@/nonexistent/p.json"),
        ("report", "9lives", "-s", "* * * * *"),
        ("report", "t"),  # no --schedule
    ):
        result = run("trigger", "add-timer", *args)
        assert result.exit_code == 2, (args, result.output)
    assert api.requests == []


def test_add_timer_reports_the_servers_refusal(api: FakeApi) -> None:
    message = "Cron nicknames such as '@daily' are not accepted: write '0 0 * * *'."
    api.on("POST", BASE, _error(400, "Trigger.Invalid", message))
    result = run("trigger", "add-timer", "report", "daily", "--schedule", "@daily")
    assert result.exit_code == 1
    assert f"error: Trigger.Invalid: {message}" in result.stderr
    assert result.stdout == ""


# ---- nimbus trigger add-url ----------------------------------------------------------


def test_add_url_prints_the_url_on_stdout(api: FakeApi) -> None:
    api.on("POST", BASE, _echo_created)
    public = run("trigger", "add-url", "report", "web", "--public")
    assert public.exit_code == 0, public.output
    assert api.body() == {
        "name": "web",
        "type": "http",
        "enabled": True,
        "config": {"auth": "public"},
    }
    assert public.stdout == "http://nimbus.test/fn/default/report/\n"
    assert "created http trigger report/web → report · auth public" in public.stderr
    keyed = run("trigger", "add-url", "report", "web", "-q", "prod")
    assert keyed.exit_code == 0, keyed.output
    assert api.body()["config"] == {"auth": "key"} and api.body()["qualifier"] == "prod"
    assert keyed.stdout == "http://nimbus.test/fn/default/report:prod/\n"
    assert "Authorization: Bearer KEY" in keyed.stderr
    last_wins = run("trigger", "add-url", "report", "web", "--public", "--key")
    assert last_wins.exit_code == 0 and api.body()["config"] == {"auth": "key"}
    as_json = json.loads(run("trigger", "add-url", "report", "web", "--json").stdout)
    assert as_json["url"] == "http://nimbus.test/fn/default/report/"


def test_add_url_of_a_missing_function(api: FakeApi) -> None:
    api.on(
        "POST",
        "/v1/functions/nope/triggers",
        _error(404, "Function.NotFound", "function 'nope' does not exist"),
    )
    result = run("trigger", "add-url", "nope", "web")
    assert result.exit_code == 1
    assert "error: Function.NotFound: function 'nope' does not exist" in result.stderr


# ---- nimbus trigger list / show ------------------------------------------------------


def test_list_prints_a_table_json_or_a_hint(api: FakeApi) -> None:
    never = {**MORNING, "name": "off", "enabled": False, "last_fired": None}
    api.on("GET", BASE, httpx.Response(200, json={"triggers": [MORNING, never, URL]}))
    listed = run("trigger", "list", "report")
    assert listed.exit_code == 0, listed.output
    header, morning, off, url = (line.split("  ") for line in listed.stdout.strip().splitlines())
    cells = [[c.strip() for c in row if c.strip()] for row in (header, morning, off, url)]
    assert cells == [
        ["TRIGGER", "TYPE", "QUALIFIER", "ENABLED", "SCHEDULE/AUTH", "LAST FIRED/URL"],
        ["morning", "timer", "$LATEST", "yes", "0 9 * * * (Asia/Shanghai)",
         "2024-05-02 09:00:00 +08:00"],
        ["off", "timer", "$LATEST", "no", "0 9 * * * (Asia/Shanghai)", "never"],
        ["url", "http", "prod", "yes", "auth public", "http://nimbus.test/fn/default/report:prod/"],
    ]  # fmt: skip
    as_json = json.loads(run("trigger", "list", "report", "--json").stdout)
    assert [t["name"] for t in as_json] == ["morning", "off", "url"]
    assert as_json[0]["config"]["payload"] == {"report": "daily"}
    api.on("GET", BASE, httpx.Response(200, json={"triggers": []}))
    empty = run("trigger", "list", "report")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert "nimbus trigger add-timer report" in empty.stderr


def test_show_a_timer_and_an_http_trigger(api: FakeApi) -> None:
    api.on("GET", f"{BASE}/morning", httpx.Response(200, json=MORNING))
    api.on("GET", f"{BASE}/url", httpx.Response(200, json=URL))
    timer = run("trigger", "show", "report", "morning")
    assert timer.exit_code == 0, timer.output
    assert timer.stdout.splitlines() == [
        "trigger     report/morning",
        "type        timer",
        "qualifier   $LATEST",
        "enabled     yes",
        "schedule    0 9 * * *",
        "timezone    Asia/Shanghai",
        "catch-up    latest",
        'payload     {"report": "daily"}',
        "last fired  2024-05-02 09:00:00 +08:00",
        "created     2024-05-01 12:00:00",
        "updated     2024-05-01 12:00:00",
    ]
    http = run("trigger", "show", "report", "url")
    assert "auth       public" in http.stdout
    assert "url        http://nimbus.test/fn/default/report:prod/" in http.stdout
    assert json.loads(run("trigger", "show", "report", "url", "--json").stdout) == URL


def test_show_cuts_a_long_payload(api: FakeApi) -> None:
    big = {**MORNING, "config": {**MORNING["config"], "payload": {"x": "y" * 500}}}
    api.on("GET", f"{BASE}/morning", httpx.Response(200, json=big))
    result = run("trigger", "show", "report", "morning")
    assert "--json shows it whole" in result.stdout


def test_show_of_a_missing_trigger_points_to_the_list(api: FakeApi) -> None:
    message = "function 'report' has no trigger 'nope'; list them with `nimbus trigger list report`"
    api.on("GET", f"{BASE}/nope", _error(404, "Trigger.NotFound", message))
    result = run("trigger", "show", "report", "nope")
    assert result.exit_code == 1
    assert f"error: Trigger.NotFound: {message}" in result.stderr


def test_fired_text_in_the_triggers_time_zone() -> None:
    def at(last_fired: str | None, timezone: str | None = None) -> str:
        config = {"schedule": "* * * * *", **({"timezone": timezone} if timezone else {})}
        return fired_text(Trigger("t", "f", "timer", config=config, last_fired=last_fired))

    assert at(None) == "never"
    assert at("2024-05-02T01:00:00Z") == "2024-05-02 01:00:00 +00:00"
    assert at("2024-05-02T01:00:00+00:00", "Asia/Shanghai") == "2024-05-02 09:00:00 +08:00"
    assert at("2024-07-01T07:00:00Z", "Europe/Berlin") == "2024-07-01 09:00:00 +02:00"
    assert at("2024-05-02T01:00:00", "Asia/Shanghai") == "2024-05-02 09:00:00 +08:00"  # naive
    assert at("2024-05-02T01:00:00Z", "Not/AZone") == "2024-05-02 01:00:00 +00:00"
    assert at("yesterday") == "yesterday"


# ---- nimbus trigger enable / disable / delete ----------------------------------------


def test_enable_and_disable(api: FakeApi) -> None:
    api.on(
        "PATCH",
        f"{BASE}/morning",
        lambda r: httpx.Response(200, json={**MORNING, **json.loads(r.content)}),
    )
    disabled = run("trigger", "disable", "report", "morning")
    assert disabled.exit_code == 0, disabled.output
    assert api.body() == {"enabled": False}
    assert disabled.stdout.strip() == "disabled timer trigger report/morning"
    assert "nimbus trigger enable report morning" in disabled.stderr
    enabled = run("trigger", "enable", "report", "morning")
    assert enabled.exit_code == 0, enabled.output
    assert api.body() == {"enabled": True}
    assert enabled.stdout.strip() == "enabled timer trigger report/morning"
    assert api.calls == [("PATCH", f"{BASE}/morning")] * 2


def test_delete_asks_first(api: FakeApi) -> None:
    api.on("DELETE", f"{BASE}/morning", httpx.Response(204))
    assert run("trigger", "delete", "report", "morning", input="n\n").exit_code == 1
    assert api.requests == []  # declined: nothing sent
    deleted = run("trigger", "delete", "report", "morning", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.strip() == "deleted trigger report/morning"
    assert run("trigger", "delete", "report", "morning", input="y\n").exit_code == 0
    assert api.calls == [("DELETE", f"{BASE}/morning")] * 2
    api.on("DELETE", f"{BASE}/gone", _error(404, "Trigger.NotFound", "no trigger 'gone'"))
    missing = run("trigger", "delete", "report", "gone", "-y")
    assert missing.exit_code == 1 and "Trigger.NotFound" in missing.stderr


def test_trigger_names_are_checked_before_sending_anything(api: FakeApi) -> None:
    for args in (
        ("show", "report", "9lives"),
        ("enable", "report", "has space"),
        ("disable", "report", "x" * 65),
        ("delete", "report", "a/b", "--yes"),
        ("add-url", "report", "-web"),
    ):
        result = run("trigger", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Invalid value for 'trigger'" in result.output or "No such option" in result.output
    assert "'9lives' is not a trigger name" in run("trigger", "show", "report", "9lives").output
    assert api.requests == []


def test_trigger_is_a_registered_command_group() -> None:
    result = run("trigger", "--help")
    assert result.exit_code == 0
    for command in ("add-timer", "add-url", "list", "show", "enable", "disable", "delete"):
        assert command in result.stdout
