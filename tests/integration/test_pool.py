"""Instance pools against a real server: warm reuse, scale-out, throttling, keep-alive,
drain on update, replacement of crashed instances."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import Server, instance_pids, wait_until

# Module-level code runs once per instance: INITS counts it, PID names the process.
# The event may ask the handler to drop a marker file (so the test knows the call is
# running), sleep, or crash.
HANDLER = """
import os, pathlib, time
PID = os.getpid()
INITS = []
INITS.append(1)
SERVED = []

def handler(event, context):
    SERVED.append(1)
    if event.get("mark"):
        pathlib.Path(event["mark"]).write_text(str(PID))
    start = time.time()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("crash"):
        os._exit(3)
    return {"pid": PID, "inits": len(INITS), "served": len(SERVED), "start": start,
            "end": time.time(), "v": os.environ.get("V")}
"""


def _alive(pid: int) -> bool:
    """A live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _post(http: httpx.Client, name: str, event: dict[str, Any]) -> httpx.Response:
    return http.post(f"/v1/functions/{name}/invocations", content=json.dumps(event),
                     headers={"Content-Type": "application/json"})


def test_cold_then_warm_on_the_same_instance(server: Server) -> None:
    server.deploy("pool-warm", {"app.py": HANDLER})
    first = server.invoke("pool-warm", {})
    assert first["status"] == "succeeded", first
    assert first["cold_start"] is True
    assert first["init_duration_ms"] is not None and first["init_duration_ms"] > 0

    second = server.invoke("pool-warm", {})
    assert second["status"] == "succeeded", second
    assert second["cold_start"] is False
    assert second["init_duration_ms"] is None
    # Same process, module code ran once, and it has now served two calls.
    assert second["result"]["pid"] == first["result"]["pid"]
    assert second["result"]["inits"] == 1
    assert second["result"]["served"] == 2
    assert instance_pids(server.data_dir) >= {first["result"]["pid"]}


def test_scale_out_to_max_instances_one_call_each(server: Server) -> None:
    server.deploy("pool-scale", {"app.py": HANDLER}, max_instances=3, timeout_s=10)
    with ThreadPoolExecutor(max_workers=6) as ex:
        responses = list(ex.map(lambda _: _post(server.http, "pool-scale", {"sleep": 0.5}),
                                range(6)))
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert all(b["status"] == "succeeded" for b in bodies), bodies
    pids = {b["result"]["pid"] for b in bodies}
    assert len(pids) == 3, f"expected exactly max_instances=3 instances, got {pids}"
    assert sum(b["cold_start"] for b in bodies) == 3
    # One call at a time per instance: the calls each instance served never overlap.
    for pid in pids:
        spans = sorted((b["result"]["start"], b["result"]["end"])
                       for b in bodies if b["result"]["pid"] == pid)
        assert len(spans) == 2, spans
        assert spans[0][1] <= spans[1][0], f"instance {pid} ran two calls at once: {spans}"



def test_cap_holds_while_instances_are_launching(make_server: Any) -> None:
    """After a restart the first calls also unpack the code, so launches take a while:
    calls arriving meanwhile must not start instances beyond max_instances."""
    first: Server = make_server()
    first.deploy("capped", {"app.py": HANDLER}, max_instances=3, timeout_s=10)
    first.stop()
    srv = Server(first.data_dir).start()
    try:
        with ThreadPoolExecutor(max_workers=12) as ex:
            responses = list(ex.map(lambda _: _post(srv.http, "capped", {"sleep": 0.3}),
                                    range(12)))
        assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses]
        pids = {r.json()["result"]["pid"] for r in responses}
        assert len(pids) == 3, f"max_instances=3 but {len(pids)} instances served: {pids}"
    finally:
        srv.stop()
        srv.close()

def test_throttled_when_queue_full_or_wait_too_long(make_server: Any) -> None:
    srv: Server = make_server(max_queued=1, queue_timeout_s=0.5)
    srv.deploy("slow", {"app.py": HANDLER}, max_instances=1, timeout_s=10)
    warm = srv.invoke("slow", {})  # the one instance exists and is idle
    pid = warm["result"]["pid"]

    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = [ex.submit(_post, srv.http, "slow", {"sleep": 2}) for _ in range(4)]
        responses = [f.result() for f in futures]
    ok = [r for r in responses if r.status_code == 200]
    throttled = [r for r in responses if r.status_code == 429]
    # One call got the instance; one waited 0.5 s and gave up, the others found the
    # queue full. Nothing else (no 5xx, no second instance).
    assert len(ok) == 1 and len(throttled) == 3, [(r.status_code, r.text) for r in responses]
    assert ok[0].json()["result"]["pid"] == pid
    for r in throttled:
        assert r.json()["error"]["code"] == "Invocation.Throttled", r.text
        assert int(r.headers["Retry-After"]) >= 1
    # The server keeps serving, on the same instance.
    after = srv.invoke("slow", {})
    assert after["status"] == "succeeded" and after["result"]["pid"] == pid


def test_keepalive_releases_extras_then_the_last(make_server: Any) -> None:
    srv: Server = make_server(keepalive_s=0.3, last_keepalive_s=1.0)
    srv.deploy("burst", {"app.py": HANDLER}, max_instances=3, timeout_s=10)
    with ThreadPoolExecutor(max_workers=3) as ex:
        bodies = list(ex.map(lambda _: srv.invoke("burst", {"sleep": 0.5}), range(3)))
    burst_done = time.monotonic()
    burst_pids = {b["result"]["pid"] for b in bodies}
    assert len(burst_pids) == 3, bodies

    # Extras go after ~keepalive_s; one stays warm.
    assert wait_until(lambda: len(instance_pids(srv.data_dir)) <= 1, timeout=5)
    extras_gone = time.monotonic()
    kept = instance_pids(srv.data_dir)
    assert len(kept) == 1 and kept <= burst_pids, kept
    (kept_pid,) = kept
    assert all(not _alive(p) for p in burst_pids - kept)

    # The last one goes after ~last_keepalive_s, well after the extras.
    assert wait_until(lambda: not _alive(kept_pid), timeout=5)
    last_gone = time.monotonic()
    assert last_gone - burst_done >= 0.8, last_gone - burst_done
    assert last_gone - extras_gone >= 0.3, (extras_gone - burst_done, last_gone - burst_done)
    assert wait_until(lambda: not instance_pids(srv.data_dir), timeout=2)

    # Nothing is warm any more: the next call starts a new instance.
    again = srv.invoke("burst", {})
    assert again["cold_start"] is True
    assert again["result"]["pid"] not in burst_pids


def test_warm_instance_survives_within_keepalive(make_server: Any) -> None:
    srv: Server = make_server(keepalive_s=0.3, last_keepalive_s=30)
    srv.deploy("steady", {"app.py": HANDLER})
    first = srv.invoke("steady", {})
    # Idle well past keepalive_s: as the only instance it is kept until last_keepalive_s.
    assert not wait_until(lambda: not _alive(first["result"]["pid"]), timeout=1.0)
    second = srv.invoke("steady", {})
    assert second["cold_start"] is False
    assert second["result"]["pid"] == first["result"]["pid"]


def test_update_drains_old_instance_while_new_calls_use_new(server: Server,
                                                          tmp_path: Path) -> None:
    name = "pool-drain"
    server.deploy(name, {"app.py": HANDLER}, env={"V": "1"}, timeout_s=10)
    warm = server.invoke(name, {})
    old_pid = warm["result"]["pid"]
    assert warm["result"]["v"] == "1"

    mark = tmp_path / "long-started"
    with ThreadPoolExecutor(max_workers=1) as ex:
        long_call = ex.submit(_post, server.http, name, {"sleep": 2, "mark": str(mark)})
        assert wait_until(mark.exists, timeout=10), "the long call never started"

        r = server.http.patch(f"/v1/functions/{name}", json={"env": {"V": "2"}})
        assert r.status_code == 200, r.text
        assert r.json()["env"] == {"V": "2"}
        assert _alive(old_pid), "the busy instance was killed by the update"

        new = server.invoke(name, {})
        assert not long_call.done(), "the new call waited for the old instance"
        assert new["status"] == "succeeded", new
        assert new["cold_start"] is True
        assert new["result"]["pid"] != old_pid
        assert new["result"]["v"] == "2"

        long = long_call.result(timeout=30)
    assert long.status_code == 200, long.text
    body = long.json()
    assert body["status"] == "succeeded", body
    assert body["result"]["pid"] == old_pid and body["result"]["v"] == "1"

    # Once its call is done the old instance is released; the new one stays warm.
    assert wait_until(lambda: not _alive(old_pid), timeout=5)
    again = server.invoke(name, {})
    assert again["cold_start"] is False
    assert again["result"]["pid"] == new["result"]["pid"] and again["result"]["v"] == "2"



def test_calls_waiting_during_an_update_run_on_the_new_revision(server: Server,
                                                                tmp_path: Path) -> None:
    # A call waiting for its cold start when the function is updated.
    init_mark = tmp_path / "init-started"
    slow_init = ("import os, pathlib, time\n"
                 "if os.environ.get('INIT_MARK'):\n"
                 "    pathlib.Path(os.environ['INIT_MARK']).touch()\n"
                 "    time.sleep(1)\n")
    server.deploy("pool-requeue-cold", {"app.py": slow_init + HANDLER}, timeout_s=10,
                  env={"V": "1", "INIT_MARK": str(init_mark)})
    # A call queued behind the only (busy) instance when the function is updated.
    server.deploy("pool-requeue-busy", {"app.py": HANDLER}, max_instances=1, timeout_s=10,
                  env={"V": "1"})
    busy_pid = server.invoke("pool-requeue-busy", {})["result"]["pid"]
    busy_mark = tmp_path / "busy-started"

    with ThreadPoolExecutor(max_workers=3) as ex:
        cold = ex.submit(_post, server.http, "pool-requeue-cold", {})
        long = ex.submit(_post, server.http, "pool-requeue-busy",
                         {"sleep": 1.5, "mark": str(busy_mark)})
        assert wait_until(init_mark.exists, timeout=10)
        assert wait_until(busy_mark.exists, timeout=10)
        queued = ex.submit(_post, server.http, "pool-requeue-busy", {})
        time.sleep(0.3)  # lets it queue; if it has not yet, it simply arrives after the update
        for name in ("pool-requeue-cold", "pool-requeue-busy"):
            r = server.http.patch(f"/v1/functions/{name}", json={"env": {"V": "2"}})
            assert r.status_code == 200, r.text
        answers = {"cold": cold.result(timeout=30), "queued": queued.result(timeout=30),
                   "long": long.result(timeout=30)}

    for what, r in answers.items():
        assert r.status_code == 200, (what, r.text)
        assert r.json()["status"] == "succeeded", (what, r.text)
    # Calls that had not started run the new configuration; the one running finished on
    # the old instance.
    assert answers["cold"].json()["result"]["v"] == "2"
    assert answers["queued"].json()["result"]["v"] == "2"
    assert answers["queued"].json()["result"]["pid"] != busy_pid
    assert answers["long"].json()["result"] == {**answers["long"].json()["result"],
                                                "pid": busy_pid, "v": "1"}

def test_crashed_instance_is_replaced(server: Server) -> None:
    name = "pool-crash"
    server.deploy(name, {"app.py": HANDLER})
    warm = server.invoke(name, {})
    old_pid = warm["result"]["pid"]

    crashed = server.invoke(name, {"crash": True})
    assert crashed["status"] == "failed", crashed
    assert crashed["cold_start"] is False
    assert crashed["error"]["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in crashed["error"]["errorMessage"]
    assert wait_until(lambda: not _alive(old_pid), timeout=5)

    after = server.invoke(name, {})
    assert after["status"] == "succeeded", after
    assert after["cold_start"] is True
    assert after["result"]["pid"] != old_pid
    assert after["result"]["inits"] == 1 and after["result"]["served"] == 1
