"""Synchronous invocation: results, context, and every kind of function failure.

Every test here runs twice: under the default sandbox and under the plain
``process`` backend, which stays supported for development machines.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.harness import NIMBUS, TOKEN, Server, instance_pids, wait_until


@pytest.fixture(scope="module", params=["default-sandbox", "process-sandbox"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = {"NIMBUS_SANDBOX": "process"} if request.param == "process-sandbox" else {}
    srv = Server(tmp_path_factory.mktemp(request.param) / "data", env).start()
    yield srv
    srv.stop()
    srv.close()


def test_banner_names_the_backend_and_warns_without_isolation(server: Server) -> None:
    banner = server.log_path.read_text()
    if server.env.get("NIMBUS_SANDBOX") == "process":
        assert "sandbox: process" in banner and "NOT isolated" in banner, banner
    else:
        assert "sandbox: namespaces" in banner and "NOT isolated" not in banner, banner


CONTEXT = """
import os, time, uuid
INSTANCE = uuid.uuid4().hex  # one per instance process: pids repeat across PID namespaces
INITS = []
INITS.append(1)

def handler(event, context):
    return {
        "event": event,
        "instance": INSTANCE,
        "inits": len(INITS),
        "request_id": context.aws_request_id,
        "scf_request_id": context.request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "env": os.environ.get("GREETING"),
    }
"""


def test_result_context_and_init_once(server: Server) -> None:
    server.deploy("ctx", {"app.py": CONTEXT}, memory_mb=256, timeout_s=7, env={"GREETING": "hi"})
    first = server.invoke("ctx", {"x": 1})
    assert first["status"] == "succeeded"
    assert first["cold_start"] is True and first["init_duration_ms"] > 0
    r = first["result"]
    assert r["event"] == {"x": 1}
    assert r["request_id"] == first["request_id"] == r["scf_request_id"]
    assert r["function_name"] == "ctx" and r["function_version"] == "$LATEST"
    assert int(r["memory"]) == 256
    assert "ctx" in r["arn"] and r["log_group"].endswith("/ctx") and r["log_stream"]
    assert 6000 < r["remaining"] <= 7000
    assert r["env"] == "hi"
    assert first["billed_duration_ms"] >= 1

    second = server.invoke("ctx", [1, "two", None])
    assert second["cold_start"] is False and second["init_duration_ms"] is None
    assert second["result"]["instance"] == r["instance"]
    assert second["result"]["inits"] == 1  # module-level code ran once
    assert second["result"]["event"] == [1, "two", None]
    assert second["request_id"] != first["request_id"]


def test_unicode_and_plain_values(server: Server) -> None:
    server.deploy("echo", {"app.py": "def handler(e, c):\n    return e\n"})
    for event in ("héllo ☃ 𝄞", 42, None, {"nested": {"a": [1, 2.5, True]}}):
        assert server.invoke("echo", event)["result"] == (event if event is not None else {})


def test_handler_exception_is_reported_and_instance_survives(server: Server) -> None:
    code = (
        "import uuid\n"
        "INSTANCE = uuid.uuid4().hex\n"
        "def helper():\n"
        "    raise ValueError('bad value')\n"
        "def handler(event, context):\n"
        "    if event.get('fail'):\n"
        "        helper()\n"
        "    return INSTANCE\n"
    )
    server.deploy("raises", {"app.py": code})
    instance = server.invoke("raises")["result"]
    r = server.http.post("/v1/functions/raises/invocations", json={"fail": True})
    assert r.status_code == 200
    assert r.headers["X-Nimbus-Function-Error"] == "Unhandled"
    failed = r.json()
    assert failed["status"] == "failed"
    assert failed["error"]["errorType"] == "ValueError"
    assert failed["error"]["errorMessage"] == "bad value"
    trace = "".join(failed["error"]["stackTrace"])
    assert "app.py" in trace and "helper" in trace
    assert "bootstrap" not in trace  # platform frames stripped
    again = server.invoke("raises")
    assert again["result"] == instance and again["cold_start"] is False


def test_init_errors_reach_the_caller(server: Server) -> None:
    cases = {
        "importerr": ({"app.py": "import not_a_module_anywhere\n"}, "Runtime.ImportModuleError"),
        "syntaxerr": (
            {"app.py": "def handler(e, c)\n    return 1\n"},
            "Runtime.UserCodeSyntaxError",
        ),
        "nohandler": ({"app.py": "def other(e, c):\n    return 1\n"}, "Runtime.HandlerNotFound"),
    }
    for name, (files, error_type) in cases.items():
        server.deploy(name, files)
        for _ in range(2):  # every call reports it; no retry storm in between
            result = server.invoke(name)
            assert result["status"] == "failed"
            assert result["error"]["errorType"] == error_type, result
            assert result["cold_start"] is True


def test_timeout_kills_the_instance(server: Server) -> None:
    code = (
        "import time, uuid\n"
        "INSTANCE = uuid.uuid4().hex\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('sleep', 0))\n"
        "    return INSTANCE\n"
    )
    server.deploy("slow", {"app.py": code}, timeout_s=1)
    before = instance_pids(server.data_dir)
    instance = server.invoke("slow")["result"]
    (pid,) = instance_pids(server.data_dir) - before
    timed_out = server.invoke("slow", {"sleep": 5})
    assert timed_out["status"] == "failed"
    assert timed_out["error"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in timed_out["error"]["errorMessage"]
    assert 900 < timed_out["duration_ms"] < 3000
    fresh = server.invoke("slow")
    assert fresh["cold_start"] is True and fresh["result"] != instance
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or not _is_alive(pid))


def _is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_crashing_instances_are_named_and_replaced(server: Server) -> None:
    code = (
        "import ctypes, os\n"
        "def handler(event, context):\n"
        "    if event.get('exit'):\n"
        "        os._exit(7)\n"
        "    if event.get('segv'):\n"
        "        ctypes.string_at(0)\n"
        "    return 'alive'\n"
    )
    server.deploy("crash", {"app.py": code})
    server.invoke("crash")
    exited = server.invoke("crash", {"exit": True})
    assert exited["error"]["errorType"] == "Runtime.ExitError"
    assert "exit status 7" in exited["error"]["errorMessage"]
    assert server.invoke("crash")["status"] == "succeeded"
    segv = server.invoke("crash", {"segv": True})
    assert segv["error"]["errorType"] == "Runtime.ExitError"
    assert "SIGSEGV" in segv["error"]["errorMessage"]
    assert server.invoke("crash")["cold_start"] is True


def test_unserialisable_result_is_a_marshal_error(server: Server) -> None:
    server.deploy("marshal", {"app.py": "def handler(e, c):\n    return object()\n"})
    result = server.invoke("marshal")
    assert result["error"]["errorType"] == "Runtime.MarshalError"


def test_cli_deploy_invoke_list_show_delete(server: Server, tmp_path: object) -> None:
    from pathlib import Path

    src = Path(str(tmp_path)) / "fn"
    src.mkdir()
    (src / "app.py").write_text("def handler(event, context):\n    return {'got': event}\n")
    env = {**os.environ, "NIMBUS_URL": server.url, "NIMBUS_TOKEN": TOKEN}

    def nimbus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NIMBUS, *args], env=env, capture_output=True, text=True, timeout=60)

    r = nimbus(
        "deploy",
        str(src),
        "--name",
        "clihello",
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--memory",
        "192",
        "--env",
        "K=V",
    )
    assert r.returncode == 0, r.stderr
    r = nimbus("invoke", "clihello", "--data", '{"x": 1}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"got": {"x": 1}}
    assert "cold start" in r.stderr
    r = nimbus("invoke", "clihello", "--data", "{bad")
    assert r.returncode == 2
    r = nimbus("list")
    assert "clihello" in r.stdout
    r = nimbus("show", "clihello", "--json")
    assert json.loads(r.stdout)["memory_mb"] == 192
    r = nimbus("update", "clihello", "--timeout", "10")
    assert r.returncode == 0, r.stderr
    assert server.http.get("/v1/functions/clihello").json()["timeout_s"] == 10
    r = nimbus("delete", "clihello", "--yes")
    assert r.returncode == 0, r.stderr
    r = nimbus("show", "clihello")
    assert r.returncode == 1 and "Function.NotFound" in r.stderr
