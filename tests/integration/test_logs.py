"""Function logs: captured per call, queried, tailed, followed, bounded under a flood."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import NIMBUS, TOKEN, Server

TAGS_APP = """\
import sys

print("module loaded")
print("module warning", file=sys.stderr)


def handler(event, context):
    print(f"out {event['n']}")
    print(f"err {event['n']}", file=sys.stderr)
    return event["n"]
"""

ECHO_APP = """\
def handler(event, context):
    print(event["say"])
    return "ok"
"""

# ~5 MB of output: 40 bursts of 1000 lines, then one 1 MB line whose newline comes last.
FLOOD_APP = """\
import sys
import time

PAD = "x" * 95


def handler(event, context):
    for burst in range(40):
        for i in range(1000):
            print(f"{burst:02d}-{i:04d} {PAD}")
        time.sleep(0.02)
    for _ in range(1000):
        sys.stdout.write("L" * 1024)
        sys.stdout.flush()
    sys.stdout.write("\\n")
    print("flood done")
    return "done"
"""

PING_APP = """\
def handler(event, context):
    return {"pong": event.get("n")}
"""


def messages(lines: list[dict[str, Any]], stream: str | None = None) -> list[str]:
    return [x["message"] for x in lines if stream is None or x["stream"] == stream]


def reports(lines: list[dict[str, Any]]) -> list[str]:
    return [m for m in messages(lines, "platform") if m.startswith("REPORT RequestId: ")]


def rss_kb(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_lines_are_tagged_by_request_id(server: Server) -> None:
    server.deploy("logs-tags", {"app.py": TAGS_APP})
    calls = [server.invoke("logs-tags", {"n": n}) for n in (1, 2)]
    assert [c["status"] for c in calls] == ["succeeded", "succeeded"], calls
    assert calls[0]["cold_start"] and not calls[1]["cold_start"]

    for n, call in zip((1, 2), calls, strict=True):
        rid = call["request_id"]
        lines = server.logs("logs-tags", request_id=rid)
        assert all(x["request_id"] == rid for x in lines), lines
        assert messages(lines, "stdout") == [f"out {n}"], lines
        assert messages(lines, "stderr") == [f"err {n}"], lines
        report = reports(lines)
        assert len(report) == 1, lines
        assert report[0].startswith(f"REPORT RequestId: {rid}\tDuration: ")
        # Only the cold call reports the init time.
        assert ("Init Duration" in report[0]) is (n == 1), report

    init = server.logs("logs-tags", request_id="init")
    assert messages(init, "stdout") == ["module loaded"], init
    assert messages(init, "stderr") == ["module warning"], init

    everything = server.logs("logs-tags")
    assert len(reports(everything)) == 2, everything
    # Every output line is tagged: init or one of the calls.
    tags = {x["request_id"] for x in everything}
    assert tags == {"init", calls[0]["request_id"], calls[1]["request_id"]}, everything


def test_log_tail_header(server: Server) -> None:
    server.deploy("logs-tail", {"app.py": TAGS_APP})
    plain = server.invoke("logs-tail", {"n": 1})
    assert "log_tail" not in plain, plain

    tailed = server.invoke("logs-tail", {"n": 7}, **{"X-Nimbus-Log-Type": "Tail"})
    assert tailed["status"] == "succeeded", tailed
    tail = tailed["log_tail"].splitlines()
    assert "out 7" in tail and "err 7" in tail, tail
    # Only this call's lines: not the previous call's, not init output.
    assert "out 1" not in tail and "module loaded" not in tail, tail


def test_follow_streams_new_lines(server: Server) -> None:
    server.deploy("logs-follow", {"app.py": ECHO_APP})
    assert server.invoke("logs-follow", {"say": "backlog line"})["status"] == "succeeded"
    marker = f"followed {uuid.uuid4().hex}"
    subscribed = threading.Event()
    arrived = threading.Event()
    received: list[tuple[float, dict[str, Any]]] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            with (
                httpx.Client(
                    base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
                ) as client,
                client.stream(
                    "GET", "/v1/functions/logs-follow/logs", params={"follow": "true"}
                ) as response,
            ):
                assert response.status_code == 200, response.read()
                assert response.headers["content-type"].startswith("application/x-ndjson")
                for raw in response.iter_lines():
                    if not raw.strip():
                        continue  # keep-alive
                    line = json.loads(raw)
                    received.append((time.monotonic(), line))
                    if line["message"] == "backlog line":
                        subscribed.set()  # the backlog came: new lines are followed now
                    if line["message"] == marker:
                        arrived.set()
                        return  # leaving the block closes the stream
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            subscribed.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert subscribed.wait(15) and not errors, errors
    invoked_at = time.monotonic()
    call = server.invoke("logs-follow", {"say": marker})
    assert call["status"] == "succeeded", call
    assert arrived.wait(10), (errors, [x for _, x in received])
    thread.join(10)
    assert not thread.is_alive() and not errors, errors

    at, line = next((t, x) for t, x in received if x["message"] == marker)
    assert line["request_id"] == call["request_id"] and line["stream"] == "stdout", line
    assert at - invoked_at < 5
    # The server is fine after the follower went away.
    assert server.invoke("logs-follow", {"say": "after"})["status"] == "succeeded"


def test_flood_of_output_is_bounded(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    assert srv.proc is not None
    srv.deploy("flood", {"app.py": FLOOD_APP}, timeout_s=60)
    srv.deploy("ping", {"app.py": PING_APP})
    assert srv.invoke("ping", {"n": 0})["status"] == "succeeded"  # warm
    rss_before = rss_kb(srv.proc.pid)

    outcome: dict[str, Any] = {}

    def flood() -> None:
        try:
            outcome["result"] = srv.invoke("flood", {})
        except BaseException as exc:
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    started = time.monotonic()
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    pings: list[tuple[float, float]] = []
    n = 0
    while thread.is_alive():
        n += 1
        t0 = time.monotonic()
        r = srv.invoke("ping", {"n": n})
        assert r["status"] == "succeeded" and r["result"] == {"pong": n}, r
        pings.append((t0, time.monotonic()))
        time.sleep(0.02)
    thread.join(60)
    assert "error" not in outcome, outcome
    flood_call = outcome["result"]
    assert flood_call["status"] == "succeeded" and flood_call["result"] == "done", flood_call

    # Other calls went on while the flood was being captured, and stayed fast.
    during = [(a, b) for a, b in pings if a > started + 0.3 and b < outcome["ended"]]
    assert len(during) >= 5, (len(pings), flood_call["duration_ms"])
    assert max(b - a for a, b in during) < 2.0, during

    lines = srv.logs("flood", request_id=flood_call["request_id"], limit=10_000)
    msgs = messages(lines, "stdout")
    cut = [m for m in msgs if m.startswith("LLLL")]
    assert len(cut) == 1, [m[:80] for m in msgs[-5:]]
    assert "line cut" in cut[0]
    assert len(cut[0].encode()) < 17 * 1024
    assert msgs[-1] == "flood done"
    # The newest lines are all there, in order: nothing lost at the end of the flood.
    numbered = [m.split()[0] for m in msgs if not m.startswith(("LLLL", "flood"))]
    expected = [f"{b:02d}-{i:04d}" for b in range(40) for i in range(1000)][-len(numbered) :]
    assert len(numbered) > 9_000 and numbered == expected
    assert len(reports(lines)) == 1

    grown_mb = (rss_kb(srv.proc.pid) - rss_before) / 1024
    assert grown_mb < 100, f"server RSS grew by {grown_mb:.0f} MB"
    assert srv.invoke("ping", {"n": -1})["status"] == "succeeded"


def test_cli_logs_request_id(server: Server, tmp_path: Path) -> None:
    server.deploy("logs-cli", {"app.py": ECHO_APP})
    wanted = server.invoke("logs-cli", {"say": "cli wanted line"})
    other = server.invoke("logs-cli", {"say": "cli other line"})
    assert wanted["status"] == other["status"] == "succeeded"
    env = {
        **os.environ,
        "NIMBUS_URL": server.url,
        "NIMBUS_TOKEN": TOKEN,
        "NIMBUS_CONFIG": str(tmp_path / "config.json"),
    }
    done = subprocess.run(
        [NIMBUS, "logs", "logs-cli", "--request-id", wanted["request_id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert any(
        row.endswith("cli wanted line") and wanted["request_id"] in row and " stdout " in row
        for row in out
    ), done.stdout
    assert any(f"REPORT RequestId: {wanted['request_id']}" in row for row in out), done.stdout
    assert "cli other line" not in done.stdout
