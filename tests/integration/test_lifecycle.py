"""The server's life: graceful SIGTERM, SIGKILL and restart on the same data, interrupted
deploys, and processes that instances leave behind.

Instances are named by their id (``AWS_LAMBDA_LOG_STREAM_NAME``, also their pidfile's
name) and found on the host through their pidfile, so this holds for every sandbox.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import Server, children_of, instance_pids, make_zip, wait_until

PR_SET_CHILD_SUBREAPER = 36

HANDLER = """
import os, subprocess, time
INSTANCE = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]

def handler(event, context):
    if event.get("say"):
        print(event["say"], flush=True)
    if event.get("spawn"):
        subprocess.Popen(["sleep", "300"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"instance": INSTANCE, "version": VERSION}

VERSION = "v1"
"""


def _code(version: str) -> dict[str, str]:
    return {"app.py": HANDLER.replace('VERSION = "v1"', f"VERSION = {version!r}")}


def _alive(pid: int) -> bool:
    """A live process (a zombie, which PID 1 here may never reap, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _host_pid(srv: Server, instance: str) -> int:
    """The host pid of a live instance, from the sandbox's pidfile."""
    return int((srv.data_dir / "run" / "pids" / f"{instance}.pid").read_text().split()[0])


def _the_sleeper(root: int) -> int:
    """The one ``sleep 300`` a handler started under instance ``root``."""
    assert wait_until(lambda: len(_sleepers(root)) == 1, timeout=5), _sleepers(root)
    (pid,) = _sleepers(root)
    return pid


def _sleepers(root: int) -> set[int]:
    """Live ``sleep 300`` processes descending from ``root``."""
    found = set()
    for pid in children_of(root):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.split(b"\0")[:2] == [b"sleep", b"300"] and _alive(pid):
            found.add(pid)
    return found


def _post(srv: Server, name: str, event: dict[str, Any]) -> httpx.Response:
    return srv.http.post(
        f"/v1/functions/{name}/invocations",
        content=json.dumps(event),
        headers={"Content-Type": "application/json"},
    )


def _logged(srv: Server, name: str, message: str) -> bool:
    return any(line["message"] == message for line in srv.logs(name))


def _stored_log_messages(data_dir: Path, function: str) -> list[str]:
    """What the log writer has committed to disk (read behind the server's back)."""
    db = sqlite3.connect(f"file:{data_dir / 'logs.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT message FROM logs WHERE function=?", (function,)).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()
    return [r[0] for r in rows]


@contextlib.contextmanager
def _adopting_orphans() -> Iterator[None]:
    """Make this process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER), so
    a test can reap them as an init like systemd would (PID 1 here never reaps)."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, ctypes.get_errno()
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is an exited child of this process; say whether it was."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def test_sigterm_lets_calls_in_flight_finish_then_stops_everything(make_server: Any) -> None:
    srv: Server = make_server()
    srv.deploy("busy", _code("v1"), timeout_s=10)
    srv.deploy("idle", _code("v1"))
    assert srv.invoke("idle", {})["status"] == "succeeded"  # an idle instance, too
    with ThreadPoolExecutor(max_workers=1) as ex:
        in_flight = ex.submit(_post, srv, "busy", {"say": "working", "sleep": 1})
        assert wait_until(lambda: _logged(srv, "busy", "working"), timeout=10)
        assert srv.proc is not None
        instances = instance_pids(srv.data_dir)
        descendants = children_of(srv.proc.pid)
        assert len(instances) == 2 and instances <= descendants, (instances, descendants)

        rc = srv.stop(signal.SIGTERM)
        response = in_flight.result(timeout=30)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded", response.text
    assert rc == 0, srv.output()
    assert wait_until(lambda: not any(_alive(p) for p in descendants), timeout=5), [
        p for p in descendants if _alive(p)
    ]
    assert not instance_pids(srv.data_dir)


def test_sigkill_then_restart_on_the_same_data(make_server: Any) -> None:
    srv: Server = make_server()
    srv.deploy("keeper", _code("v1"))
    first = srv.invoke("keeper", {"say": "before-the-crash"})
    assert first["status"] == "succeeded"
    old_pid = _host_pid(srv, first["result"]["instance"])
    # The log writer commits on its own (every 0.2 s): no query forces it here.
    assert wait_until(
        lambda: "before-the-crash" in _stored_log_messages(srv.data_dir, "keeper"), timeout=5
    )
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL

    restarted = Server(srv.data_dir).start()
    try:
        listed = restarted.http.get("/v1/functions").json()["functions"]
        assert [f["name"] for f in listed if f["name"] == "keeper"] == ["keeper"]
        again = restarted.invoke("keeper", {"say": "after-the-restart"})
        assert again["status"] == "succeeded", again
        assert again["cold_start"] is True
        assert again["result"]["instance"] != first["result"]["instance"]
        assert again["result"]["version"] == "v1"
        messages = [line["message"] for line in restarted.logs("keeper")]
        assert "before-the-crash" in messages and "after-the-restart" in messages
        # The killed server's instance is gone (it exits when its Runtime API does, and
        # the restart sweeps leftovers); only the new one is listed.
        assert wait_until(lambda: not _alive(old_pid), timeout=5)
        new_pid = _host_pid(restarted, again["result"]["instance"])
        assert instance_pids(restarted.data_dir) == {new_pid}
    finally:
        restarted.stop()
        restarted.close()


def test_restart_sweeps_what_instances_of_a_killed_server_left(make_server: Any) -> None:
    srv: Server = make_server()
    srv.deploy("spawner", _code("v1"))
    instance = _host_pid(srv, srv.invoke("spawner", {"spawn": True})["result"]["instance"])
    child = _the_sleeper(instance)
    with _adopting_orphans():
        srv.stop(signal.SIGKILL)
        # The instance exits once its Runtime API is gone and is reaped, as a real init
        # would. With the process sandbox the sleep it started lives on (in a PID
        # namespace it dies with the namespace's init).
        assert wait_until(lambda: not _alive(instance), timeout=5)
        reaped = _reap(instance)
        if srv.env.get("NIMBUS_SANDBOX") == "process":
            assert reaped, "the instance was not adopted: the test would prove nothing"
            assert not Path(f"/proc/{instance}").exists()
            assert _alive(child)

        restarted = Server(srv.data_dir).start()
        try:
            assert wait_until(lambda: not _alive(child), timeout=5), (
                f"sleep {child}, started by an instance of the killed server, survived the restart"
            )
        finally:
            restarted.stop()
            restarted.close()
            if _alive(child):
                os.kill(child, signal.SIGKILL)
            _reap(child)


def test_interrupted_deploy_keeps_the_old_code(make_server: Any) -> None:
    srv: Server = make_server()
    srv.deploy("stable", _code("v1"))
    before = srv.http.get("/v1/functions/stable").json()
    assert srv.invoke("stable", {})["result"]["version"] == "v1"

    # The new code is uploaded, then the server dies before the function points to it.
    new_sha = srv.upload(make_zip(_code("v2")))
    assert new_sha != before["code_sha256"]
    srv.stop(signal.SIGKILL)

    restarted = Server(srv.data_dir).start()
    try:
        after = restarted.http.get("/v1/functions/stable").json()
        assert after["code_sha256"] == before["code_sha256"]
        assert after["revision"] == before["revision"]
        assert restarted.invoke("stable", {})["result"]["version"] == "v1"
        # The uploaded package survived and can still be deployed.
        r = restarted.http.patch("/v1/functions/stable", json={"code_sha256": new_sha})
        assert r.status_code == 200, r.text
        assert restarted.invoke("stable", {})["result"]["version"] == "v2"
    finally:
        restarted.stop()
        restarted.close()


def test_put_with_unknown_code_changes_nothing(server: Server) -> None:
    server.deploy("life-unknown-code", _code("v1"), env={"A": "1"})
    before = server.http.get("/v1/functions/life-unknown-code").json()
    first = server.invoke("life-unknown-code", {})
    assert first["result"]["version"] == "v1"

    missing = "0" * 64
    for send in (
        lambda: server.http.put(
            "/v1/functions/life-unknown-code",
            json={
                "runtime": "python3.11",
                "handler": "app.handler",
                "code_sha256": missing,
                "env": {"A": "2"},
            },
        ),
        lambda: server.http.patch(
            "/v1/functions/life-unknown-code", json={"code_sha256": missing, "env": {"A": "2"}}
        ),
    ):
        r = send()
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "Code.NotFound", r.text

    after = server.http.get("/v1/functions/life-unknown-code").json()
    assert after == before
    # Not even the warm instance was touched.
    again = server.invoke("life-unknown-code", {})
    assert again["result"]["version"] == "v1" and again["cold_start"] is False
    assert again["result"]["instance"] == first["result"]["instance"]


def test_background_processes_end_with_the_server(make_server: Any) -> None:
    srv: Server = make_server()
    srv.deploy("bg", _code("v1"))
    result = srv.invoke("bg", {"spawn": True})
    assert result["status"] == "succeeded", result
    # The call is over, yet what it started keeps running inside the instance.
    child = _the_sleeper(_host_pid(srv, result["result"]["instance"]))

    assert srv.stop(signal.SIGTERM) == 0
    assert wait_until(lambda: not _alive(child), timeout=5), f"sleep {child} outlived the server"


def test_background_processes_end_with_their_instance(make_server: Any) -> None:
    srv: Server = make_server(keepalive_s=0.2, last_keepalive_s=0.5, scale_in_cooldown_s=0)
    srv.deploy("bg-reaped", _code("v1"))
    instance = _host_pid(srv, srv.invoke("bg-reaped", {"spawn": True})["result"]["instance"])
    child = _the_sleeper(instance)
    # The idle instance is released after last_keepalive_s; its child goes with it.
    assert wait_until(lambda: not _alive(instance), timeout=5)
    assert wait_until(lambda: not _alive(child), timeout=5)
    assert srv.proc is not None and srv.proc.poll() is None
