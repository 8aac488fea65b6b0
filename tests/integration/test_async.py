"""Asynchronous invocation against a real server: accepted at once, run, retried,
dead-lettered, re-driven, held back while throttled, and never lost, even when the
server or an instance is killed with SIGKILL in the middle."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.integration.harness import Server, instance_pids, wait_until

ECHO = """
def handler(event, context):
    return {"event": event, "request_id": context.aws_request_id}
"""

# Fails the first ``fail`` attempts of each event (counted per instance: tests that use
# it keep one instance), sleeps when asked.
FLAKY = """
import time
SEEN = {}

def handler(event, context):
    SEEN[context.aws_request_id] = SEEN.get(context.aws_request_id, 0) + 1
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if SEEN[context.aws_request_id] <= event.get("fail", 0):
        raise RuntimeError("attempt %d fails" % SEEN[context.aws_request_id])
    return {"attempt": SEEN[context.aws_request_id]}
"""

# Destinations print the record they receive, one JSON line.
RECORDER = """
import json

def handler(event, context):
    print(json.dumps(event))
    return "recorded"
"""

EVENT = {"X-Nimbus-Invocation-Type": "Event"}


def _submit(srv: Server, target: str, event: Any) -> str:
    r = srv.http.post(f"/v1/functions/{target}/invocations", json=event, headers=EVENT)
    assert r.status_code == 202, r.text
    assert r.headers["X-Nimbus-Request-Id"] == r.json()["request_id"]
    return str(r.json()["request_id"])


def _status(srv: Server, request_id: str) -> dict[str, Any]:
    r = srv.http.get(f"/v1/invocations/{request_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _finished(srv: Server, request_id: str, timeout: float = 20) -> dict[str, Any]:
    assert wait_until(
        lambda: _status(srv, request_id)["status"] in ("succeeded", "failed"), timeout=timeout
    ), _status(srv, request_id)
    return _status(srv, request_id)


def test_event_is_accepted_at_once_and_runs(server: Server) -> None:
    server.deploy("async-echo", {"app.py": ECHO})
    started = time.monotonic()
    request_id = _submit(server, "async-echo", {"n": 1})
    assert time.monotonic() - started < 1.0
    done = _finished(server, request_id)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    # The function sees the event id as its request id: its de-duplication key.
    assert done["result"] == {"event": {"n": 1}, "request_id": request_id}
    assert done["event"] == {"n": 1}
    # Unknown ids, and checks without running.
    missing = server.http.get("/v1/invocations/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Invocation.NotFound"
    dry = server.http.post(
        "/v1/functions/async-echo/invocations",
        json={},
        headers={"X-Nimbus-Invocation-Type": "DryRun"},
    )
    assert dry.status_code == 204
    nowhere = server.http.post("/v1/functions/nowhere/invocations", json={}, headers=EVENT)
    assert nowhere.status_code == 404  # refused now, not dead-lettered later
    big = server.http.post(
        "/v1/functions/async-echo/invocations",
        content=json.dumps({"x": "y" * 300_000}),
        headers={**EVENT, "Content-Type": "application/json"},
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "Request.PayloadTooLarge"


def test_retries_then_succeeds_or_goes_to_dead_letters_and_redrive(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(async_retry_base_s=0.2, async_retry_cap_s=0.5)
    srv.deploy("async-flaky", {"app.py": FLAKY}, max_instances=1, timeout_s=10)
    recovers = _submit(srv, "async-flaky", {"fail": 2})
    done = _finished(srv, recovers)
    assert done["status"] == "succeeded" and done["attempts"] == 3, done
    assert done["result"] == {"attempt": 3}

    doomed = _submit(srv, "async-flaky", {"fail": 99})
    dead = _finished(srv, doomed)
    assert dead["status"] == "failed" and dead["attempts"] == 3, dead
    assert dead["dead_reason"] == "attempts_exhausted"
    assert dead["error"]["errorType"] == "RuntimeError"
    letters = srv.http.get("/v1/functions/async-flaky/dead-letters").json()["dead_letters"]
    assert [d["request_id"] for d in letters] == [doomed]

    # Fix the function, then re-drive: the same event id runs again and succeeds.
    srv.deploy("async-flaky", {"app.py": ECHO}, max_instances=1, timeout_s=10)
    r = srv.http.post("/v1/functions/async-flaky/dead-letters/redrive", json={})
    assert r.status_code == 200 and r.json() == {"redriven": 1}
    again = _finished(srv, doomed)
    assert again["status"] == "succeeded" and again["result"]["request_id"] == doomed
    assert srv.http.get("/v1/functions/async-flaky/dead-letters").json()["dead_letters"] == []

    # A deleted function takes its events along: a new one of the same name starts clean.
    gone = _submit(srv, "async-flaky", {"fail": 0})
    _finished(srv, gone)
    assert srv.http.delete("/v1/functions/async-flaky").status_code == 204
    srv.deploy("async-flaky", {"app.py": ECHO})
    assert srv.http.get(f"/v1/invocations/{gone}").status_code == 404
    assert srv.http.get(f"/v1/invocations/{doomed}").status_code == 404


def test_destinations_receive_success_and_failure_records(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(async_retry_base_s=0.1, async_retry_cap_s=0.2)
    srv.deploy("async-sink", {"app.py": RECORDER})
    srv.deploy(
        "async-src",
        {"app.py": FLAKY},
        max_instances=1,
        async_max_attempts=2,
        on_success="async-sink",
        on_failure="async-sink",
    )
    ok = _submit(srv, "async-src", {"fail": 0})
    bad = _submit(srv, "async-src", {"fail": 9})
    assert _finished(srv, ok)["status"] == "succeeded"
    assert _finished(srv, bad)["attempts"] == 2  # async_max_attempts

    def records() -> dict[str, dict[str, Any]]:
        out = {}
        for line in srv.logs("async-sink"):
            if line["stream"] == "stdout" and line["message"].startswith("{"):
                record = json.loads(line["message"])
                out[record["requestContext"]["requestId"]] = record
        return out

    assert wait_until(lambda: {ok, bad} <= set(records()), timeout=20), records()
    got = records()
    assert got[ok]["requestContext"]["condition"] == "Success"
    assert got[ok]["responsePayload"] == {"attempt": 1}
    assert got[ok]["requestPayload"] == {"fail": 0}
    assert got[bad]["requestContext"]["condition"] == "RetriesExhausted"
    assert got[bad]["responseContext"]["functionError"] == "Unhandled"
    assert got[bad]["responsePayload"]["errorType"] == "RuntimeError"


def test_throttled_events_are_held_back_not_dropped(server: Server) -> None:
    server.deploy("async-held", {"app.py": ECHO})
    server.http.put("/v1/functions/async-held/concurrency", json={"reserved": 0})
    ids = [_submit(server, "async-held", {"i": i}) for i in range(5)]
    time.sleep(2.5)
    for request_id in ids:
        held = _status(server, request_id)
        assert held["status"] in ("queued", "running"), held
        assert held["attempts"] == 0, held  # holding back costs no attempt
    assert server.http.delete("/v1/functions/async-held/concurrency").status_code == 204
    for request_id in ids:
        assert _finished(server, request_id, timeout=40)["status"] == "succeeded"


def test_other_namespaces_cannot_see_an_event(server: Server) -> None:
    server.deploy("async-private", {"app.py": ECHO})
    request_id = _submit(server, "async-private", {})
    _finished(server, request_id)
    server.http.post("/v1/namespaces", json={"name": "async-other"})
    key = server.http.post(
        "/v1/keys", json={"namespace": "async-other", "role": "developer", "name": "t"}
    ).json()["secret"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.get(f"/v1/invocations/{request_id}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "Invocation.NotFound"


def test_nothing_is_lost_when_the_server_is_killed(make_server: Callable[..., Server]) -> None:
    srv = make_server(async_retry_base_s=0.2, async_retry_cap_s=1)
    srv.deploy("async-many", {"app.py": FLAKY}, max_instances=4, timeout_s=10)
    n = 2000
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(
            pool.map(lambda i: _submit(srv, "async-many", {"i": i, "sleep": 0.002}), range(n))
        )
    assert len(set(ids)) == n
    # Some have run, most have not: kill the server without any chance to clean up.
    assert wait_until(
        lambda: any(_status(srv, i)["status"] == "succeeded" for i in ids[:50]), timeout=20
    )
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    srv.start()

    def pending() -> list[str]:
        left = []
        for request_id in ids:
            status = _status(srv, request_id)
            assert status["status"] != "failed", status
            if status["status"] != "succeeded":
                left.append(request_id)
        return left

    assert wait_until(lambda: not pending(), timeout=120, interval=1.0), len(pending())
    # Each ran at least once and returned its own event (not someone else's).
    for request_id in ids[:: n // 50]:
        assert _status(srv, request_id)["result"]["attempt"] >= 1


def test_an_instance_killed_mid_event_is_retried(make_server: Callable[..., Server]) -> None:
    srv = make_server(async_retry_base_s=0.2, async_retry_cap_s=0.5)
    srv.deploy("async-victim", {"app.py": FLAKY}, max_instances=1, timeout_s=10)
    request_id = _submit(srv, "async-victim", {"sleep": 2})
    assert wait_until(lambda: _status(srv, request_id)["status"] == "running", timeout=15)
    assert wait_until(lambda: bool(instance_pids(srv.data_dir)), timeout=10)
    time.sleep(0.5)
    for pid in instance_pids(srv.data_dir):
        os.kill(pid, signal.SIGKILL)
    done = _finished(srv, request_id, timeout=30)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
