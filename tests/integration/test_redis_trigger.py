"""``redis-stream`` triggers against a real ``redis-server`` and a real ``nimbus serve``.

Each test starts its own redis-server on a free loopback port, in a temporary
directory, and stops it by its PID. What the function saw is read back from its
logs (the function prints each batch) or, for the SIGKILL test, from a file the
function appends to (that test runs instances with the ``process`` sandbox so the
function can write into the test's directory: logs buffered in the killed server
would be lost with it, and the point is to count what really ran).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.integration.harness import NIMBUS, TOKEN, Server, free_port, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "redis-stream"
PASSWORD = "s3cret-pa55"

RECORDER = """
import json, time

def handler(event, context):
    records = event["Records"]
    print("BATCH " + json.dumps(records))
    time.sleep(max(float(r["fields"].get("pause", 0)) for r in records))
    if any(r["fields"].get("raise") for r in records):
        raise RuntimeError("boom")
    return {"batchItemFailures": [
        {"itemIdentifier": r["messageId"]} for r in records if r["fields"].get("fail")
    ]}
"""

FILE_RECORDER = """
import os, time

def handler(event, context):
    lines = "".join(f"{r['messageId']} {r['attempt']}\\n" for r in event["Records"])
    fd = os.open(os.environ["SEEN"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)
    time.sleep(float(os.environ["PAUSE_S"]))
    return {}
"""


class RedisServer:
    """One redis-server on a free loopback port, data in its own directory."""

    def __init__(self, directory: Path, *, password: str | None, appendonly: bool) -> None:
        self.port = free_port()
        self.dir = directory
        self.password = password
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def url(self, *, with_password: bool = True) -> str:
        auth = f":{self.password}@" if self.password and with_password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--dir", str(self.dir)]
        argv += ["--appendonly", "yes" if self.appendonly else "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = self.client()
        assert wait_until(lambda: self._pings(client), timeout=10), (
            self.dir / "redis.log"
        ).read_text()
        client.close()
        return self

    def _pings(self, client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, decode_responses=True
        )


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    assert shutil.which("redis-server"), "redis-server is missing: run `make setup` as root"
    started: list[RedisServer] = []

    def factory(*, password: str | None = PASSWORD, appendonly: bool = False) -> RedisServer:
        server = RedisServer(
            tmp_path / f"redis{len(started)}", password=password, appendonly=appendonly
        )
        started.append(server.start())
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def srv(server: Server) -> Iterator[Server]:
    """The shared server; the functions a test made there (and so their triggers and
    consumers) are deleted after it."""
    yield server
    for function in server.http.get("/v1/functions").json()["functions"]:
        if function["name"].startswith("rs-"):
            server.http.delete(f"/v1/functions/{function['name']}")


# ---- helpers ---------------------------------------------------------------------------


def _add(srv: Server, function: str, name: str, **config: Any) -> httpx.Response:
    body: dict[str, Any] = {"name": name, "type": "redis-stream", "config": config}
    return srv.http.post(f"/v1/functions/{function}/triggers", json=body)


def _trigger(srv: Server, function: str, name: str) -> dict[str, Any]:
    r = srv.http.get(f"/v1/functions/{function}/triggers/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _consuming(srv: Server, function: str, name: str, rds: redis.Redis, stream: str) -> None:
    """Wait until the trigger's consumer runs and its group exists."""

    def ready() -> bool:
        if _trigger(srv, function, name)["status"] != "consuming":
            return False
        try:
            return any(g["name"] for g in rds.xinfo_groups(stream))
        except redis.ResponseError:
            return False

    assert wait_until(ready, timeout=15), _trigger(srv, function, name)


def _batches(srv: Server, function: str) -> list[list[dict[str, Any]]]:
    return [
        json.loads(line["message"][len("BATCH ") :])
        for line in srv.logs(function)
        if line["message"].startswith("BATCH ")
    ]


def _seen(srv: Server, function: str) -> list[tuple[str, int]]:
    return [(r["messageId"], r["attempt"]) for batch in _batches(srv, function) for r in batch]


def _pending(rds: redis.Redis, stream: str, group: str) -> int:
    return int(rds.xpending(stream, group)["pending"])


def _group(rds: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    return next(g for g in rds.xinfo_groups(stream) if g["name"] == group)


def _metric(srv: Server, name: str, **labels: str) -> float | None:
    """The sum of the metric's samples with these labels; None when it has none."""
    text = srv.http.get("/metrics").text
    samples = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    ]
    return sum(samples) if samples else None


# ---- tests -----------------------------------------------------------------------------


def test_batches_acked_only_after_success(
    make_redis: Callable[..., RedisServer], srv: Server
) -> None:
    rs = make_redis()
    rds = rs.client()
    srv.deploy("rs-batch", {"app.py": RECORDER})
    # Created with the CLI, as a user would; the password is never printed back.
    env = {**os.environ, "NIMBUS_URL": srv.url, "NIMBUS_TOKEN": TOKEN}
    cli = subprocess.run(
        [
            NIMBUS,
            "trigger",
            "add-redis",
            "rs-batch",
            "orders",
            "--url",
            rs.url(),
            "--stream",
            "orders",
            "--batch-size",
            "5",
            "--batch-window-ms",
            "300",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert PASSWORD not in cli.stdout + cli.stderr and ":****@" in cli.stdout
    _consuming(srv, "rs-batch", "orders", rds, "orders")
    shown = subprocess.run(
        [NIMBUS, "trigger", "show", "rs-batch", "orders"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0 and "consuming" in shown.stdout, shown.stderr
    listed = srv.http.get("/v1/functions/rs-batch/triggers").text
    assert PASSWORD not in shown.stdout + listed and "password" not in listed

    # One batch of 5, in flight for 1.5 s: pending (not acked) until the function returns.
    with rds.pipeline() as pipe:
        for i in range(5):
            pipe.xadd("orders", {"n": str(i), "pause": "1.5"})
        first = pipe.execute()
    assert wait_until(lambda: _pending(rds, "orders", "nimbus-rs-batch") == 5, timeout=10)
    assert _group(rds, "orders", "nimbus-rs-batch")["lag"] == 0  # delivered, not yet acked
    assert wait_until(lambda: _pending(rds, "orders", "nimbus-rs-batch") == 0, timeout=10)
    assert wait_until(lambda: len(_batches(srv, "rs-batch")) == 1, timeout=5)
    (batch,) = _batches(srv, "rs-batch")
    assert [r["messageId"] for r in batch] == first
    assert batch[0] == {
        "eventSource": "nimbus:redis-stream",
        "eventSourceARN": f"redis://127.0.0.1:{rs.port}/0/orders",
        "stream": "orders",
        "group": "nimbus-rs-batch",
        "messageId": first[0],
        "fields": {"n": "0", "pause": "1.5"},
        "attempt": 1,
    }

    # Twelve more: batches of at most 5, in stream order, each entry once, all acked.
    more = [rds.xadd("orders", {"n": str(i)}) for i in range(12)]
    assert wait_until(lambda: len(_seen(srv, "rs-batch")) >= 17, timeout=15)
    batches = _batches(srv, "rs-batch")[1:]
    assert all(1 <= len(b) <= 5 for b in batches) and len(batches) >= 3
    assert [r["messageId"] for b in batches for r in b] == more
    assert wait_until(lambda: _pending(rds, "orders", "nimbus-rs-batch") == 0, timeout=5)
    labels = {"function": "rs-batch", "trigger": "orders"}
    assert _metric(srv, "nimbus_stream_messages_total", outcome="acked", **labels) == 17
    assert _metric(srv, "nimbus_stream_messages_total", outcome="consumed", **labels) == 17
    assert wait_until(lambda: _metric(srv, "nimbus_stream_lag", **labels) == 0, timeout=10)
    assert not rds.exists("orders:dead")


def test_partial_batch_failure_retries_then_dead_letters(
    make_redis: Callable[..., RedisServer], srv: Server
) -> None:
    """The example function (examples/redis-stream) rejects bad orders through
    batchItemFailures: the good ones are acked at once, the bad one is retried with
    backoff and dead-lettered after max_attempts; a raising handler fails whole batches."""
    rs = make_redis()
    rds = rs.client()
    files = {p.name: p.read_text() for p in EXAMPLE.glob("*.py")}
    srv.deploy("rs-orders", files)
    r = _add(
        srv,
        "rs-orders",
        "q",
        url=rs.url(),
        stream="orders",
        max_attempts=3,
        batch_size=10,
        batch_window_ms=300,
    )
    assert r.status_code == 201, r.text
    _consuming(srv, "rs-orders", "q", rds, "orders")
    with rds.pipeline() as pipe:
        pipe.xadd("orders", {"order_id": "1", "amount": "9.90"})
        pipe.xadd("orders", {"order_id": "2", "amount": "-1"})
        pipe.xadd("orders", {"order_id": "3", "amount": "5"})
        good1, bad, good3 = pipe.execute()

    def dead() -> list[tuple[str, dict[str, str]]]:
        return list(rds.xrange("orders:dead"))

    assert wait_until(lambda: len(dead()) == 1, timeout=20)
    ((_dead_id, fields),) = dead()
    assert fields["order_id"] == "2" and fields["amount"] == "-1"
    assert fields["nimbus:message-id"] == bad and fields["nimbus:attempts"] == "3"
    assert "batchItemFailures" in fields["nimbus:error"]
    assert fields["nimbus:trigger"] == "default/rs-orders/q"
    assert fields["nimbus:group"] == "nimbus-rs-orders"
    assert _pending(rds, "orders", "nimbus-rs-orders") == 0
    messages = [line["message"] for line in srv.logs("rs-orders")]
    assert sum("processed order 1 " in m for m in messages) == 1  # acked the first time
    assert sum("processed order 3 " in m for m in messages) == 1
    rejected = [m for m in messages if m.startswith(f"rejected {bad}")]
    assert [m.split("(")[1].split(")")[0] for m in rejected] == [
        "attempt 1",
        "attempt 2",
        "attempt 3",
    ]
    # Retries waited: ~1 s after attempt 1, ~2 s after attempt 2.
    stamps = [
        line["ts"]
        for line in srv.logs("rs-orders")
        if line["message"].startswith(f"rejected {bad}")
    ]
    assert stamps[1] - stamps[0] >= 0.9 and stamps[2] - stamps[1] >= 1.9, stamps
    labels = {"function": "rs-orders", "trigger": "q"}
    assert _metric(srv, "nimbus_stream_messages_total", outcome="dead_lettered", **labels) == 1
    assert _metric(srv, "nimbus_stream_messages_total", outcome="failed", **labels) == 3
    assert _metric(srv, "nimbus_stream_messages_total", outcome="acked", **labels) == 2
    del good1, good3

    # A handler that raises fails the whole batch: every entry is dead-lettered with the error.
    srv.deploy("rs-raise", {"app.py": RECORDER})
    assert (
        _add(srv, "rs-raise", "q", url=rs.url(), stream="jobs", max_attempts=2).status_code == 201
    )
    _consuming(srv, "rs-raise", "q", rds, "jobs")
    ids = [rds.xadd("jobs", {"raise": "1", "n": str(i)}) for i in range(2)]
    assert wait_until(lambda: rds.xlen("jobs:dead") == 2, timeout=20)
    dead_jobs = rds.xrange("jobs:dead")
    assert sorted(f["nimbus:message-id"] for _, f in dead_jobs) == sorted(ids)
    assert all(f["nimbus:error"] == "RuntimeError: boom" for _, f in dead_jobs)
    assert all(f["nimbus:attempts"] == "2" for _, f in dead_jobs)
    assert _pending(rds, "jobs", "nimbus-rs-raise") == 0


def test_throttled_batches_wait_without_counting_attempts(
    make_redis: Callable[..., RedisServer], srv: Server
) -> None:
    rs = make_redis()
    rds = rs.client()
    srv.deploy("rs-throttle", {"app.py": RECORDER})
    r = srv.http.put("/v1/functions/rs-throttle/concurrency", json={"reserved": 0})
    assert r.status_code == 200, r.text
    assert (
        _add(srv, "rs-throttle", "q", url=rs.url(), stream="t", max_attempts=1).status_code == 201
    )
    _consuming(srv, "rs-throttle", "q", rds, "t")
    entry = rds.xadd("t", {"n": "1"})
    assert wait_until(
        lambda: _trigger(srv, "rs-throttle", "q")["status"] == "throttled", timeout=10
    )
    time.sleep(3)  # held, not failed: with max_attempts 1 a failure would dead-letter it
    assert not rds.exists("t:dead") and _seen(srv, "rs-throttle") == []
    assert _pending(rds, "t", "nimbus-rs-throttle") == 1
    assert srv.http.delete("/v1/functions/rs-throttle/concurrency").status_code == 204
    assert wait_until(lambda: _seen(srv, "rs-throttle") == [(entry, 1)], timeout=20)
    assert wait_until(lambda: _pending(rds, "t", "nimbus-rs-throttle") == 0, timeout=5)
    assert _trigger(srv, "rs-throttle", "q")["status"] == "consuming"
    assert not rds.exists("t:dead")


def test_disable_enable_and_delete(make_redis: Callable[..., RedisServer], srv: Server) -> None:
    rs = make_redis(password=None)
    rds = rs.client()
    srv.deploy("rs-toggle", {"app.py": RECORDER})
    r = _add(srv, "rs-toggle", "q", url=rs.url(), stream="s", group="workers", batch_size=100)
    assert r.status_code == 201 and r.json()["config"]["group"] == "workers", r.text
    _consuming(srv, "rs-toggle", "q", rds, "s")
    before = [rds.xadd("s", {"n": str(i)}) for i in range(2)]
    assert wait_until(lambda: [i for i, _ in _seen(srv, "rs-toggle")] == before, timeout=10)

    r = srv.http.patch("/v1/functions/rs-toggle/triggers/q", json={"enabled": False})
    assert r.status_code == 200 and r.json()["status"] in ("stopping", "stopped"), r.text
    # It stops after the read in progress (at most half a second).
    assert wait_until(lambda: _trigger(srv, "rs-toggle", "q")["status"] == "stopped", timeout=5)
    while_off = [rds.xadd("s", {"n": str(i)}) for i in range(3)]
    time.sleep(2)
    assert len(_seen(srv, "rs-toggle")) == 2
    assert _group(rds, "s", "workers")["lag"] == 3 and _pending(rds, "s", "workers") == 0

    r = srv.http.patch("/v1/functions/rs-toggle/triggers/q", json={"enabled": True})
    assert r.status_code == 200, r.text
    # Resumes from the group's position: the three added meanwhile, each once.
    assert wait_until(lambda: len(_seen(srv, "rs-toggle")) >= 5, timeout=15)
    assert [i for i, _ in _seen(srv, "rs-toggle")] == before + while_off

    assert srv.http.delete("/v1/functions/rs-toggle/triggers/q").status_code == 204
    time.sleep(1)  # the consumer ends after the read in progress (at most half a second)
    after = rds.xadd("s", {"n": "late"})
    time.sleep(2)
    assert len(_seen(srv, "rs-toggle")) == 5 and _pending(rds, "s", "workers") == 0
    assert _group(rds, "s", "workers")["lag"] == 1 and after not in dict(_seen(srv, "rs-toggle"))


def test_bad_configuration_is_refused(make_redis: Callable[..., RedisServer], srv: Server) -> None:
    srv.deploy("rs-bad", {"app.py": RECORDER})
    nobody = free_port()  # nothing listens there
    good = {"url": f"redis://:hunter2@127.0.0.1:{nobody}/0", "stream": "s"}
    for bad in (
        {"stream": "s"},
        {"url": "redis://127.0.0.1/0"},
        {**good, "url": "http://:hunter2@127.0.0.1/0"},
        {**good, "url": "redis://:hunter2@127.0.0.1:70000/0"},
        {**good, "batch_size": 0},
        {**good, "batch_size": 1001},
        {**good, "batch_window_ms": 20_000},
        {**good, "start": "latest"},
        {**good, "max_attempts": 0},
        {**good, "group": ""},
        {**good, "extra": 1},
    ):
        r = _add(srv, "rs-bad", "q", **bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "Trigger.Invalid" and "hunter2" not in r.text
        assert len(r.json()["error"]["message"]) > 20
    assert srv.http.get("/v1/functions/rs-bad/triggers").json()["triggers"] == []
    r = _add(srv, "rs-bad", "q", **good)
    assert r.status_code == 201 and "hunter2" not in r.text
    assert _add(srv, "rs-bad", "q", **good).json()["error"]["code"] == "Trigger.AlreadyExists"
    missing = _add(srv, "rs-none", "q", **good)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Function.NotFound"
    # Redis cannot be reached: accepted all the same, and the trigger says why it waits.
    assert wait_until(lambda: _trigger(srv, "rs-bad", "q")["status"] == "error", timeout=10)
    shown = _trigger(srv, "rs-bad", "q")
    assert str(nobody) in shown["last_error"] and "hunter2" not in json.dumps(shown)
    assert shown["config"]["url"] == f"redis://:****@127.0.0.1:{nobody}/0"
    assert srv.http.delete("/v1/functions/rs-bad/triggers/q").status_code == 204

    # A wrong password: refused by Redis, reported the same way, never echoed.
    rs = make_redis()
    wrong = rs.url().replace(PASSWORD, "not-the-password")
    assert _add(srv, "rs-bad", "auth", url=wrong, stream="s").status_code == 201
    assert wait_until(lambda: _trigger(srv, "rs-bad", "auth")["status"] == "error", timeout=10)
    shown = _trigger(srv, "rs-bad", "auth")
    assert "Authentication" in shown["last_error"] or "WRONGPASS" in shown["last_error"]
    assert "not-the-password" not in json.dumps(shown)


def test_redis_restarts_while_the_trigger_runs(
    make_redis: Callable[..., RedisServer], srv: Server
) -> None:
    durable = make_redis(appendonly=True)
    rds = durable.client()
    srv.deploy("rs-restart", {"app.py": RECORDER})
    assert _add(srv, "rs-restart", "q", url=durable.url(), stream="s").status_code == 201
    _consuming(srv, "rs-restart", "q", rds, "s")
    first = [rds.xadd("s", {"n": str(i)}) for i in range(3)]
    assert wait_until(lambda: len(_seen(srv, "rs-restart")) == 3, timeout=10)

    durable.stop()  # SIGTERM: Redis goes away under the consumer
    assert wait_until(lambda: _trigger(srv, "rs-restart", "q")["status"] == "error", timeout=10)
    shown = _trigger(srv, "rs-restart", "q")
    assert shown["last_error"] and PASSWORD not in json.dumps(shown)
    assert srv.http.get("/healthz").status_code == 200  # the server carries on
    assert (_metric(srv, "nimbus_stream_errors_total", function="rs-restart") or 0) >= 1
    time.sleep(2)
    durable.start()  # same port, same directory: the append-only file brings the group back
    assert wait_until(lambda: _trigger(srv, "rs-restart", "q")["status"] == "consuming", timeout=40)
    then = [rds.xadd("s", {"n": str(i)}) for i in range(3, 6)]
    assert wait_until(lambda: len(_seen(srv, "rs-restart")) >= 6, timeout=15)
    assert [i for i, _ in _seen(srv, "rs-restart")] == first + then
    assert _pending(rds, "s", "nimbus-rs-restart") == 0

    # Without persistence the stream and the group are gone after a restart: the group is
    # created again from the start of the (new) stream, so entries added before the
    # consumer reconnects are not skipped.
    volatile = make_redis(password=None)
    vrds = volatile.client()
    srv.deploy("rs-volatile", {"app.py": RECORDER})
    assert _add(srv, "rs-volatile", "q", url=volatile.url(), stream="v").status_code == 201
    _consuming(srv, "rs-volatile", "q", vrds, "v")
    volatile.stop()
    assert wait_until(lambda: _trigger(srv, "rs-volatile", "q")["status"] == "error", timeout=10)
    volatile.start()
    early = [vrds.xadd("v", {"n": str(i)}) for i in range(3)]
    assert wait_until(lambda: len(_seen(srv, "rs-volatile")) >= 3, timeout=40)
    assert [i for i, _ in _seen(srv, "rs-volatile")] == early
    assert wait_until(lambda: _trigger(srv, "rs-volatile", "q")["status"] == "consuming", timeout=5)


@pytest.mark.timeout(240)
def test_sigkill_mid_batch_then_restart_processes_everything(
    make_server: Callable[..., Server], make_redis: Callable[..., RedisServer], tmp_path: Path
) -> None:
    rs = make_redis(appendonly=True)
    rds = rs.client()
    seen = tmp_path / "seen.txt"
    srv = make_server(sandbox="process")
    srv.deploy("rs-kill", {"app.py": FILE_RECORDER}, env={"SEEN": str(seen), "PAUSE_S": "0.15"})
    r = _add(srv, "rs-kill", "q", url=rs.url(), stream="big", batch_size=50, max_attempts=3)
    assert r.status_code == 201, r.text
    _consuming(srv, "rs-kill", "q", rds, "big")
    total = 3000
    ids: list[str] = []
    with rds.pipeline() as pipe:
        for i in range(total):
            pipe.xadd("big", {"n": str(i)})
        ids = list(pipe.execute())

    def lines() -> list[tuple[str, int]]:
        if not seen.exists():
            return []
        out = []
        for line in seen.read_text().splitlines():
            mid, attempt = line.split()
            out.append((mid, int(attempt)))
        return out

    assert wait_until(lambda: len(lines()) >= total // 3, timeout=60)
    srv.stop(signal.SIGKILL)
    in_flight = _pending(rds, "big", "nimbus-rs-kill")
    assert 0 < in_flight <= 50, in_flight  # killed with a batch in hand, not acked
    srv.start()
    assert wait_until(lambda: len({m for m, _ in lines()}) == total, timeout=120), len(lines())
    assert wait_until(lambda: _pending(rds, "big", "nimbus-rs-kill") == 0, timeout=15)
    group = _group(rds, "big", "nimbus-rs-kill")
    assert group["lag"] == 0 and group["last-delivered-id"] == ids[-1]
    got = lines()
    assert {m for m, _ in got} == set(ids)  # every entry at least once
    repeated = len(got) - total
    assert 0 <= repeated <= 50  # again only what the kill caught in flight
    # The batch the kill caught ran again after the restart as attempt 2; nothing else did.
    attempts = Counter(a for _, a in got)
    assert set(attempts) <= {1, 2} and attempts[2] <= 50, attempts
    assert not rds.exists("big:dead")
