"""The ``redis-stream`` trigger's pure half: configuration (defaults, limits, errors that
say what to write), the password sealed and never shown, the retry and partial-batch
decisions, and ``nimbus trigger add-redis`` against an httpx.MockTransport."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from nimbus.cli import context
from nimbus.cli.main import app
from nimbus.client import NimbusClient
from nimbus.domain.trigger import Trigger
from nimbus.errors import InvalidTriggerError
from nimbus.store.secretbox import SecretBox
from nimbus.triggers.redis_stream import RedisStreamKind, consumer_node
from nimbus.triggers.redis_stream_policy import (
    ORPHAN_IDLE_S,
    SEAL_CONTEXT,
    Message,
    Pending,
    chunks_by_size,
    due_for_retry,
    failed_items,
    parse_url,
    public_config,
    retry_delay_s,
    validate_config,
)

BOX = SecretBox(os.urandom(32))


def _seal(password: str) -> str:
    return BOX.seal(password.encode(), SEAL_CONTEXT)


def _valid(**config: Any) -> dict[str, Any]:
    return validate_config({"url": "redis://127.0.0.1:6379/0", "stream": "orders", **config}, _seal)


# ---- configuration ---------------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    assert _valid() == {
        "url": "redis://127.0.0.1:6379/0",
        "stream": "orders",
        "group": None,
        "batch_size": 10,
        "batch_window_ms": 0,
        "start": "$",
        "max_attempts": 5,
    }
    full = _valid(group="g1", batch_size=1000, batch_window_ms=10_000, start="0", max_attempts=1)
    assert (full["group"], full["batch_size"], full["batch_window_ms"]) == ("g1", 1000, 10_000)
    assert (full["start"], full["max_attempts"]) == ("0", 1)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost", "redis://localhost:6379/0"),
        ("redis://127.0.0.1:6380/3", "redis://127.0.0.1:6380/3"),
        ("rediss://cache.example:6390/", "rediss://cache.example:6390/0"),
        ("redis://[::1]:7000/1", "redis://[::1]:7000/1"),
        ("redis://app@host:1/2", "redis://app@host:1/2"),
    ],
)
def test_urls_are_normalised(url: str, shown: str) -> None:
    assert _valid(url=url)["url"] == shown
    assert "password_sealed" not in _valid(url=url)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"url": "redis://h/0"}, '"stream"'),
        ({"stream": "s"}, '"url"'),
        ({"url": "http://h/0", "stream": "s"}, "redis://"),
        ({"url": "redis:///0", "stream": "s"}, "redis://"),
        ({"url": "redis://h:99999/0", "stream": "s"}, "not a Redis URL"),
        ({"url": "redis://h/zero", "stream": "s"}, "database number"),
        ({"url": "redis://h/0?password=x", "stream": "s"}, "no query"),
        ({"url": 5, "stream": "s"}, '"url"'),
        ({"url": "redis://h", "stream": ""}, '"stream"'),
        ({"url": "redis://h", "stream": "two words"}, '"stream"'),
        ({"url": "redis://h", "stream": "s", "group": "x" * 257}, '"group"'),
        ({"url": "redis://h", "stream": "s", "batch_size": 0}, '"batch_size" must be'),
        ({"url": "redis://h", "stream": "s", "batch_size": 1001}, "from 1 to 1000"),
        ({"url": "redis://h", "stream": "s", "batch_size": "10"}, '"batch_size"'),
        ({"url": "redis://h", "stream": "s", "batch_size": True}, '"batch_size"'),
        ({"url": "redis://h", "stream": "s", "batch_window_ms": -1}, "0 to 10000"),
        ({"url": "redis://h", "stream": "s", "batch_window_ms": 10_001}, "0 to 10000"),
        ({"url": "redis://h", "stream": "s", "start": "latest"}, '"$"'),
        ({"url": "redis://h", "stream": "s", "max_attempts": 0}, "from 1 to 100"),
        ({"url": "redis://h", "stream": "s", "max_attempts": 101}, "from 1 to 100"),
        ({"url": "redis://h", "stream": "s", "batchsize": 5}, "unknown redis-stream setting"),
    ],
)
def test_bad_configuration_says_what_to_write(config: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidTriggerError) as caught:
        validate_config(config, _seal)
    assert caught.value.code == "Trigger.Invalid" and caught.value.status == 400
    assert says in caught.value.message


def test_the_password_is_sealed_and_never_shown() -> None:
    clean = _valid(url="redis://app:s3cr%40t@cache:6379/2")
    assert clean["url"] == "redis://app:****@cache:6379/2"
    assert "s3cr" not in json.dumps(clean)
    assert BOX.open(clean["password_sealed"], SEAL_CONTEXT) == b"s3cr@t"  # percent-decoded
    only_password = _valid(url="redis://:hunter2@cache/0")
    assert only_password["url"] == "redis://:****@cache:6379/0"
    trigger = Trigger("default", "orders-fn", "q", "redis-stream", config=only_password)
    shown = public_config(trigger)
    assert "password_sealed" not in shown and "hunter2" not in json.dumps(shown)
    assert shown["group"] == "nimbus-orders-fn"  # the effective default group
    # The stored URL, parsed back, gives the endpoint without its password.
    endpoint = parse_url(only_password["url"])
    assert (endpoint.host, endpoint.port, endpoint.db) == ("cache", 6379, 0)
    assert endpoint.arn("orders") == "redis://cache:6379/0/orders"


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@host/0",
        "redis://user:hunter2@host:notaport/0",
        "redis://user:hunter2@host/0?x=1",
        "redis://user:hunter2@host/db",
    ],
)
def test_errors_never_repeat_the_password(url: str) -> None:
    with pytest.raises(InvalidTriggerError) as caught:
        validate_config({"url": url, "stream": "s"}, _seal)
    assert "hunter2" not in caught.value.message


def test_the_kind_validates_with_the_platform_secret_box() -> None:
    kind = RedisStreamKind(
        dispatcher=None,  # type: ignore[arg-type]  # validation needs none of these
        secrets=BOX,
        metrics=None,  # type: ignore[arg-type]
        node="n",
        max_payload_bytes=1024,
    )
    clean = kind.validate({"url": "redis://:pw@h/0", "stream": "s"})
    assert BOX.open(clean["password_sealed"], SEAL_CONTEXT) == b"pw"
    trigger = Trigger("ns", "fn", "t", "redis-stream", enabled=False, config=clean)
    assert kind.public_config(trigger)["url"] == "redis://:****@h:6379/0"
    state = kind.state(trigger)
    assert state is not None and state.status == "stopped"


def test_consumer_node_is_stable_per_data_dir(tmp_path: Path) -> None:
    assert consumer_node(tmp_path) == consumer_node(tmp_path / ".")
    assert consumer_node(tmp_path / "a") != consumer_node(tmp_path / "b")


# ---- decisions ---------------------------------------------------------------------------


def test_retry_delay_doubles_to_a_cap() -> None:
    assert [retry_delay_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay_s(30) == 60.0


def test_due_for_retry_mine_after_backoff_others_when_orphaned() -> None:
    me = "node/ns/fn/t"
    mine = Pending("1-0", me, idle_ms=1_500, delivered=1)
    assert due_for_retry(mine, me=me, in_flight=set())
    assert not due_for_retry(mine, me=me, in_flight={"1-0"})  # running here now
    assert not due_for_retry(Pending("1-0", me, 1_500, 2), me=me, in_flight=set())  # 2 s
    assert due_for_retry(Pending("1-0", me, 2_000, 2), me=me, in_flight=set())
    other = Pending("2-0", "elsewhere", idle_ms=5_000, delivered=1)
    assert not due_for_retry(other, me=me, in_flight=set())
    orphaned = Pending("2-0", "elsewhere", int(ORPHAN_IDLE_S * 1000), 1)
    assert due_for_retry(orphaned, me=me, in_flight=set())


def test_failed_items_follow_lambdas_partial_batch_answer() -> None:
    ids = ["1-0", "2-0", "3-0"]

    def answer(value: Any) -> tuple[set[str], str | None]:
        return failed_items(json.dumps(value).encode(), ids)

    assert failed_items(None, ids) == (set(), None)
    assert answer({"ok": True}) == (set(), None)
    assert answer("done") == (set(), None)
    assert answer({"batchItemFailures": []}) == (set(), None)
    assert answer({"batchItemFailures": None}) == (set(), None)
    assert answer({"batchItemFailures": [{"itemIdentifier": "2-0"}]}) == ({"2-0"}, None)
    # A malformed answer fails the whole batch (as Lambda does), saying why.
    for bad in (
        {"batchItemFailures": [{"itemIdentifier": "9-9"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"id": "1-0"}]},
        {"batchItemFailures": "1-0"},
    ):
        failed, why = answer(bad)
        assert failed == set(ids) and why is not None and "itemIdentifier" in why


def test_records_and_chunks_by_size() -> None:
    m = Message("5-1", {b"order": b"42", b"bin": b"\xff"}, attempt=2)
    record = m.record("redis://h:6379/0/orders", "orders", "g")
    assert record == {
        "eventSource": "nimbus:redis-stream",
        "eventSourceARN": "redis://h:6379/0/orders",
        "stream": "orders",
        "group": "g",
        "messageId": "5-1",
        "fields": {"order": "42", "bin": "\ufffd"},
        "attempt": 2,
    }
    small = [(Message(f"{i}-0", {}, 1), b"x" * 100) for i in range(10)]
    chunks, too_big = chunks_by_size(small, 400)
    assert too_big == [] and [len(c) for c in chunks] == [3, 3, 3, 1]
    assert all(len(b'{"Records": []}') + sum(len(e) + 2 for _, e in c) <= 400 for c in chunks)
    huge = Message("9-0", {}, 1)
    chunks, too_big = chunks_by_size([small[0], (huge, b"y" * 1000), small[1]], 400)
    assert too_big == [huge] and [[m.id for m, _ in c] for c in chunks] == [["0-0", "1-0"]]


# ---- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content) if request.content else {}
        if request.method == "POST":
            config = validate_config(body["config"], _seal)
            trigger = Trigger("default", "orders", body["name"], body["type"], config=config)
            return httpx.Response(
                201,
                json={
                    "name": body["name"],
                    "function": "orders",
                    "type": body["type"],
                    "qualifier": body.get("qualifier"),
                    "enabled": body["enabled"],
                    "config": public_config(trigger),
                    "last_fired": None,
                    "url": None,
                    "status": "starting",
                    "last_error": None,
                    "created_at": "2024-05-01T12:00:00Z",
                    "updated_at": "2024-05-01T12:00:00Z",
                },
            )
        shown = {
            "name": "q",
            "function": "orders",
            "type": "redis-stream",
            "qualifier": None,
            "enabled": True,
            "config": {
                "url": "redis://:****@cache:6379/0",
                "stream": "orders",
                "group": "nimbus-orders",
                "batch_size": 10,
                "batch_window_ms": 250,
                "start": "$",
                "max_attempts": 5,
            },
            "last_fired": None,
            "url": None,
            "status": "error",
            "last_error": "ConnectionError: Error 111 connecting to cache:6379",
            "created_at": "2024-05-01T12:00:00Z",
            "updated_at": "2024-05-01T12:00:00Z",
        }
        if request.url.path.endswith("/triggers"):
            return httpx.Response(200, json={"triggers": [shown]})
        return httpx.Response(200, json=shown)

    def make_client(target: context.Target) -> NimbusClient:
        return NimbusClient(target.url, target.token, transport=httpx.MockTransport(handle))

    for var in ("NIMBUS_URL", "NIMBUS_NAMESPACE", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIMBUS_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("NIMBUS_TOKEN", "t")
    monkeypatch.setattr(context, "make_client", make_client)
    return seen


def test_cli_add_redis_sends_the_config_and_never_prints_the_password(
    requests: list[httpx.Request],
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "trigger",
            "add-redis",
            "orders",
            "q",
            "--url",
            "redis://:hunter2@cache:6379/0",
            "--stream",
            "orders",
            "--batch-size",
            "100",
            "--batch-window-ms",
            "250",
            "--start",
            "0",
            "--max-attempts",
            "3",
            "--qualifier",
            "prod",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(requests[0].content) == {
        "name": "q",
        "type": "redis-stream",
        "enabled": True,
        "qualifier": "prod",
        "config": {
            "url": "redis://:hunter2@cache:6379/0",
            "stream": "orders",
            "batch_size": 100,
            "batch_window_ms": 250,
            "start": "0",
            "max_attempts": 3,
        },
    }
    assert requests[0].url.path == "/v1/functions/orders/triggers"
    assert "hunter2" not in result.output
    assert "redis://:****@cache:6379/0" in result.output and "nimbus-orders" in result.output
    bad = CliRunner().invoke(
        app,
        [
            "trigger",
            "add-redis",
            "orders",
            "q",
            "--url",
            "redis://h",
            "--stream",
            "s",
            "--start",
            "latest",
        ],
    )
    assert bad.exit_code != 0 and "--start" in bad.output
    assert len(requests) == 1  # refused before asking the server


def test_cli_list_and_show_a_redis_trigger(requests: list[httpx.Request]) -> None:
    listed = CliRunner().invoke(app, ["trigger", "list", "orders"])
    assert listed.exit_code == 0, listed.output
    assert "stream orders (nimbus-orders)" in listed.output
    assert "error: ConnectionError" in listed.output
    shown = CliRunner().invoke(app, ["trigger", "show", "orders", "q"])
    assert shown.exit_code == 0, shown.output
    for text in (
        "redis://:****@cache:6379/0",
        "nimbus-orders",
        "10 entries, window 250 ms",
        "5, then orders:dead",
        "status",
        "ConnectionError: Error 111",
    ):
        assert text in shown.output, shown.output
