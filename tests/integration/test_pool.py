"""Instance pools against a real server: warm reuse, scale-out, throttling, keep-alive,
drain on update, replacement of crashed instances.

Instances are told apart by their id (``AWS_LAMBDA_LOG_STREAM_NAME``, which is also the
name of their pidfile), so these tests hold for every sandbox backend, including those
where the handler sees a pid of its own PID namespace.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import Server, instance_pids, wait_until

# Module-level code runs once per instance: INITS counts it. With SLOW_INIT set the
# import announces itself and takes a second. The event may ask the handler to announce
# the call (a log line, so the test knows it runs), sleep, or crash.
HANDLER = """
import os, time
INSTANCE = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
INITS = []
INITS.append(1)
SERVED = []
if os.environ.get("SLOW_INIT"):
    print("init-started", flush=True)
    time.sleep(1)

def handler(event, context):
    SERVED.append(1)
    if event.get("tag"):
        print("started", event["tag"], flush=True)
    start = time.time()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("crash"):
        os._exit(3)
    return {"instance": INSTANCE, "inits": len(INITS), "served": len(SERVED),
            "start": start, "end": time.time(), "v": os.environ.get("V")}
"""


def _alive(pid: int) -> bool:
    """A live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _host_pid(srv: Server, instance: str) -> int:
    """The host pid of a live instance, from the sandbox's pidfile."""
    return int((srv.data_dir / "run" / "pids" / f"{instance}.pid").read_text().split()[0])


def _live_instances(srv: Server) -> set[str]:
    """Ids of the instances whose process is alive."""
    live = set()
    for f in (srv.data_dir / "run" / "pids").glob("*.pid"):
        try:
            pid = int(f.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _alive(pid):
            live.add(f.stem)
    return live


def _logged(srv: Server, name: str, message: str) -> bool:
    return any(line["message"] == message for line in srv.logs(name))


def _post(http: httpx.Client, name: str, event: dict[str, Any]) -> httpx.Response:
    return http.post(
        f"/v1/functions/{name}/invocations",
        content=json.dumps(event),
        headers={"Content-Type": "application/json"},
    )


def test_cold_then_warm_on_the_same_instance(server: Server) -> None:
    server.deploy("pool-warm", {"app.py": HANDLER})
    first = server.invoke("pool-warm", {})
    assert first["status"] == "succeeded", first
    assert first["cold_start"] is True
    assert first["init_duration_ms"] is not None and first["init_duration_ms"] > 0
    instance = first["result"]["instance"]
    assert _alive(_host_pid(server, instance))

    second = server.invoke("pool-warm", {})
    assert second["status"] == "succeeded", second
    assert second["cold_start"] is False
    assert second["init_duration_ms"] is None
    # Same instance, its module code ran once, and it has now served two calls.
    assert second["result"]["instance"] == instance
    assert second["result"]["inits"] == 1
    assert second["result"]["served"] == 2


def test_scale_out_to_max_instances_one_call_each(server: Server) -> None:
    server.deploy("pool-scale", {"app.py": HANDLER}, max_instances=3, timeout_s=10)
    with ThreadPoolExecutor(max_workers=6) as ex:
        responses = list(
            ex.map(lambda _: _post(server.http, "pool-scale", {"sleep": 0.5}), range(6))
        )
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert all(b["status"] == "succeeded" for b in bodies), bodies
    instances = {b["result"]["instance"] for b in bodies}
    assert len(instances) == 3, f"expected exactly max_instances=3 instances, got {instances}"
    assert sum(b["cold_start"] for b in bodies) == 3
    # One call at a time per instance: the calls each instance served never overlap.
    for instance in instances:
        spans = sorted(
            (b["result"]["start"], b["result"]["end"])
            for b in bodies
            if b["result"]["instance"] == instance
        )
        assert len(spans) == 2, spans
        assert spans[0][1] <= spans[1][0], f"instance {instance} ran two calls at once: {spans}"


def test_cap_holds_while_instances_are_launching(make_server: Any) -> None:
    """After a restart the first calls also unpack the code, so launches take a while:
    calls arriving meanwhile must not start instances beyond max_instances."""
    first: Server = make_server()
    first.deploy("capped", {"app.py": HANDLER}, max_instances=3, timeout_s=10)
    first.stop()
    srv = Server(first.data_dir).start()
    try:
        with ThreadPoolExecutor(max_workers=12) as ex:
            responses = list(ex.map(lambda _: _post(srv.http, "capped", {"sleep": 0.3}), range(12)))
        assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses]
        instances = {r.json()["result"]["instance"] for r in responses}
        assert len(instances) == 3, f"max_instances=3 but {len(instances)} served: {instances}"
    finally:
        srv.stop()
        srv.close()


def test_throttled_when_queue_full_or_wait_too_long(make_server: Any) -> None:
    srv: Server = make_server(max_queued=1, queue_timeout_s=0.5)
    srv.deploy("slow", {"app.py": HANDLER}, max_instances=1, timeout_s=10)
    warm = srv.invoke("slow", {})  # the one instance exists and is idle
    instance = warm["result"]["instance"]

    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = [ex.submit(_post, srv.http, "slow", {"sleep": 2}) for _ in range(4)]
        responses = [f.result() for f in futures]
    ok = [r for r in responses if r.status_code == 200]
    throttled = [r for r in responses if r.status_code == 429]
    # One call got the instance; one waited 0.5 s and gave up, the others found the
    # queue full. Nothing else (no 5xx, no second instance).
    assert len(ok) == 1 and len(throttled) == 3, [(r.status_code, r.text) for r in responses]
    assert ok[0].json()["result"]["instance"] == instance
    for r in throttled:
        assert r.json()["error"]["code"] == "Invocation.Throttled", r.text
        assert int(r.headers["Retry-After"]) >= 1
    # The server keeps serving, on the same instance.
    after = srv.invoke("slow", {})
    assert after["status"] == "succeeded" and after["result"]["instance"] == instance


def test_keepalive_releases_extras_then_the_last(make_server: Any) -> None:
    srv: Server = make_server(keepalive_s=0.3, last_keepalive_s=1.0, scale_in_cooldown_s=0)
    srv.deploy("burst", {"app.py": HANDLER}, max_instances=3, timeout_s=10)
    with ThreadPoolExecutor(max_workers=3) as ex:
        bodies = list(ex.map(lambda _: srv.invoke("burst", {"sleep": 0.5}), range(3)))
    burst_done = time.monotonic()
    burst = {b["result"]["instance"] for b in bodies}
    assert len(burst) == 3, bodies
    assert len(instance_pids(srv.data_dir)) == 3

    # Extras go after ~keepalive_s; one stays warm.
    assert wait_until(lambda: len(_live_instances(srv)) <= 1, timeout=5)
    extras_gone = time.monotonic()
    kept = _live_instances(srv)
    assert len(kept) == 1 and kept <= burst, kept
    kept_pid = _host_pid(srv, next(iter(kept)))

    # The last one goes after ~last_keepalive_s, well after the extras.
    assert wait_until(lambda: not _alive(kept_pid), timeout=5)
    last_gone = time.monotonic()
    assert last_gone - burst_done >= 0.8, last_gone - burst_done
    assert last_gone - extras_gone >= 0.3, (extras_gone - burst_done, last_gone - burst_done)
    assert wait_until(lambda: not instance_pids(srv.data_dir), timeout=2)

    # Nothing is warm any more: the next call starts a new instance.
    again = srv.invoke("burst", {})
    assert again["cold_start"] is True
    assert again["result"]["instance"] not in burst


def test_last_instance_stays_warm_past_keepalive(make_server: Any) -> None:
    srv: Server = make_server(keepalive_s=0.3, last_keepalive_s=30)
    srv.deploy("steady", {"app.py": HANDLER})
    first = srv.invoke("steady", {})
    pid = _host_pid(srv, first["result"]["instance"])
    # Idle well past keepalive_s: as the only instance it is kept until last_keepalive_s.
    assert not wait_until(lambda: not _alive(pid), timeout=1.0)
    second = srv.invoke("steady", {})
    assert second["cold_start"] is False
    assert second["result"]["instance"] == first["result"]["instance"]


def test_update_drains_old_instance_while_new_calls_use_new(server: Server) -> None:
    name = "pool-drain"
    server.deploy(name, {"app.py": HANDLER}, env={"V": "1"}, timeout_s=10)
    warm = server.invoke(name, {})
    old = warm["result"]["instance"]
    old_pid = _host_pid(server, old)
    assert warm["result"]["v"] == "1"

    with ThreadPoolExecutor(max_workers=1) as ex:
        long_call = ex.submit(_post, server.http, name, {"sleep": 2, "tag": "long"})
        assert wait_until(lambda: _logged(server, name, "started long"), timeout=10)

        r = server.http.patch(f"/v1/functions/{name}", json={"env": {"V": "2"}})
        assert r.status_code == 200, r.text
        assert r.json()["env"] == {"V": "2"}
        assert _alive(old_pid), "the busy instance was killed by the update"

        new = server.invoke(name, {})
        assert not long_call.done(), "the new call waited for the old instance"
        assert new["status"] == "succeeded", new
        assert new["cold_start"] is True
        assert new["result"]["instance"] != old
        assert new["result"]["v"] == "2"

        long = long_call.result(timeout=30)
    assert long.status_code == 200, long.text
    body = long.json()
    assert body["status"] == "succeeded", body
    assert body["result"]["instance"] == old and body["result"]["v"] == "1"

    # Once its call is done the old instance is released; the new one stays warm.
    assert wait_until(lambda: not _alive(old_pid), timeout=5)
    again = server.invoke(name, {})
    assert again["cold_start"] is False
    assert again["result"]["instance"] == new["result"]["instance"]
    assert again["result"]["v"] == "2"


def test_calls_waiting_during_an_update_run_on_the_new_revision(server: Server) -> None:
    # A call waiting for its cold start when the function is updated.
    server.deploy(
        "pool-requeue-cold", {"app.py": HANDLER}, timeout_s=10, env={"V": "1", "SLOW_INIT": "1"}
    )
    # A call queued behind the only (busy) instance when the function is updated.
    server.deploy(
        "pool-requeue-busy", {"app.py": HANDLER}, max_instances=1, timeout_s=10, env={"V": "1"}
    )
    busy = server.invoke("pool-requeue-busy", {})["result"]["instance"]

    with ThreadPoolExecutor(max_workers=3) as ex:
        cold = ex.submit(_post, server.http, "pool-requeue-cold", {})
        long = ex.submit(_post, server.http, "pool-requeue-busy", {"sleep": 1.5, "tag": "long"})
        assert wait_until(lambda: _logged(server, "pool-requeue-cold", "init-started"), timeout=10)
        assert wait_until(lambda: _logged(server, "pool-requeue-busy", "started long"), timeout=10)
        queued = ex.submit(_post, server.http, "pool-requeue-busy", {})
        time.sleep(0.3)  # lets it queue; if it has not yet, it simply arrives after the update
        for name in ("pool-requeue-cold", "pool-requeue-busy"):
            r = server.http.patch(f"/v1/functions/{name}", json={"env": {"V": "2"}})
            assert r.status_code == 200, r.text
        answers = {
            "cold": cold.result(timeout=30),
            "queued": queued.result(timeout=30),
            "long": long.result(timeout=30),
        }

    for what, r in answers.items():
        assert r.status_code == 200, (what, r.text)
        assert r.json()["status"] == "succeeded", (what, r.text)
    # Calls that had not started run the new configuration; the one running finished on
    # the old instance.
    assert answers["cold"].json()["result"]["v"] == "2"
    assert answers["queued"].json()["result"]["v"] == "2"
    assert answers["queued"].json()["result"]["instance"] != busy
    long_result = answers["long"].json()["result"]
    assert long_result["instance"] == busy and long_result["v"] == "1"


def test_crashed_instance_is_replaced(server: Server) -> None:
    name = "pool-crash"
    server.deploy(name, {"app.py": HANDLER})
    warm = server.invoke(name, {})
    old = warm["result"]["instance"]
    old_pid = _host_pid(server, old)

    crashed = server.invoke(name, {"crash": True})
    assert crashed["status"] == "failed", crashed
    assert crashed["cold_start"] is False
    assert crashed["error"]["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in crashed["error"]["errorMessage"]
    assert wait_until(lambda: not _alive(old_pid), timeout=5)

    after = server.invoke(name, {})
    assert after["status"] == "succeeded", after
    assert after["cold_start"] is True
    assert after["result"]["instance"] != old
    assert after["result"]["inits"] == 1 and after["result"]["served"] == 1
