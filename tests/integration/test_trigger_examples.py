"""examples/timer-report and examples/function-url, run with the CLI as their READMEs say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.harness import TOKEN, Server, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NIMBUS = Path(sys.executable).with_name("nimbus")


def _nimbus(srv: Server, *args: str) -> str:
    env = {**os.environ, "NIMBUS_URL": srv.url, "NIMBUS_TOKEN": TOKEN}
    done = subprocess.run([str(NIMBUS), *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _printed(srv: Server, name: str) -> list[dict[str, object]]:
    out = []
    for line in srv.logs(name):
        if line["stream"] == "stdout" and line["message"].startswith("{"):
            out.append(json.loads(line["message"]))
    return out


def test_timer_report_example(server: Server) -> None:
    _nimbus(
        server, "deploy", str(EXAMPLES / "timer-report"), "--name", "report",
        "--runtime", "python3.11", "--handler", "app.handler",
    )  # fmt: skip
    # The README's schedule fires every 10 s; every second keeps the test short.
    _nimbus(
        server, "trigger", "add-timer", "report", "every-second",
        "--schedule", "* * * * * *", "--payload", '{"report": "daily"}',
    )  # fmt: skip
    assert wait_until(lambda: len(_printed(server, "report")) >= 2, timeout=20)
    first, second = _printed(server, "report")[:2]
    assert first["job"] == second["job"] == "daily"
    assert first["tick"] != second["tick"] and first["event_id"] != second["event_id"]
    _nimbus(server, "trigger", "disable", "report", "every-second")


def test_function_url_example(server: Server) -> None:
    _nimbus(
        server, "deploy", str(EXAMPLES / "function-url"), "--name", "hello-url",
        "--runtime", "python3.11", "--handler", "app.handler",
    )  # fmt: skip
    url = _nimbus(server, "trigger", "add-url", "hello-url", "web", "--public").strip()
    assert url.startswith(server.url + "/fn/default/hello-url")
    r = httpx.get(f"{url}greet?name=Ada", timeout=30)  # no key: the URL is public
    assert r.status_code == 200, r.text
    assert r.json() == {"hello": "Ada", "method": "GET", "path": "/greet"}
    assert r.cookies.get("visited") == "1"
