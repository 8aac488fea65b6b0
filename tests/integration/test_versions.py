"""Versions, aliases, reserved concurrency, provisioned instances, pre-warm and
autoscaling, against a real server with real instances."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.integration.harness import Server, instance_pids, make_zip, wait_until

# The code says which release it is; the version that ran is in the result too.
CODE = """
import os, time
INSTANCE = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
RELEASE = {release!r}

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {{"release": RELEASE, "instance": INSTANCE, "version": context.function_version}}
"""


def _deploy(srv: Server, name: str, release: str, **settings: Any) -> None:
    srv.deploy(name, {"app.py": CODE.format(release=release)}, **settings)


def _publish(srv: Server, name: str, expect: int = 201, **body: Any) -> str:
    r = srv.http.post(f"/v1/functions/{name}/versions", json=body or None)
    assert r.status_code == expect, r.text
    return str(r.json()["version"])


def _call(srv: Server, target: str, event: dict[str, Any] | None = None) -> httpx.Response:
    return srv.http.post(f"/v1/functions/{target}/invocations", json=event or {})


def _ok(srv: Server, target: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
    r = _call(srv, target, event)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return dict(r.json())


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def test_publish_list_and_delete_versions(server: Server) -> None:
    _deploy(server, "ver-crud", "a", memory_mb=192)
    assert _publish(server, "ver-crud") == "1"
    # Publishing an unchanged head answers the version that has its settings.
    assert _publish(server, "ver-crud", expect=200) == "1"
    _deploy(server, "ver-crud", "b")
    assert _publish(server, "ver-crud", description="second") == "2"

    versions = server.http.get("/v1/functions/ver-crud/versions").json()["versions"]
    assert [v["version"] for v in versions] == ["1", "2"]
    assert versions[0]["memory_mb"] == 192 and versions[1]["memory_mb"] == 128
    assert versions[1]["description"] == "second"
    one = server.http.get("/v1/functions/ver-crud/versions/1").json()
    assert one["code_sha256"] == versions[0]["code_sha256"] != versions[1]["code_sha256"]

    # Each version runs its own frozen code and settings; $LATEST is the head.
    assert _ok(server, "ver-crud:1")["result"] == {
        **_ok(server, "ver-crud:1")["result"],
        "release": "a",
        "version": "1",
    }
    assert _ok(server, "ver-crud", {})["result"]["release"] == "b"
    r = _ok(server, "ver-crud:2")
    assert r["version"] == "2" and r["result"]["release"] == "b"
    assert _ok(server, "ver-crud:$LATEST")["version"] == "$LATEST"

    # Deleting: refused while an alias uses it; then gone.
    assert server.http.put("/v1/functions/ver-crud/aliases/live", json={"version": 1}).is_success
    _error(server.http.delete("/v1/functions/ver-crud/versions/1"), 409, "Function.VersionInUse")
    assert server.http.delete("/v1/functions/ver-crud/aliases/live").status_code == 204
    assert server.http.delete("/v1/functions/ver-crud/versions/1").status_code == 204
    _error(_call(server, "ver-crud:1"), 404, "Function.VersionNotFound")
    _error(server.http.get("/v1/functions/ver-crud/versions/1"), 404, "Function.VersionNotFound")
    assert _ok(server, "ver-crud:2")["result"]["release"] == "b"


def test_qualifiers_and_their_errors(server: Server) -> None:
    _deploy(server, "ver-q", "a")
    _publish(server, "ver-q")
    server.http.put("/v1/functions/ver-q/aliases/prod", json={"version": 1})
    assert _ok(server, "ver-q:prod")["version"] == "1"
    r = server.http.post("/v1/functions/ver-q/invocations?qualifier=prod", json={})
    assert r.json()["version"] == "1" and r.headers["X-Nimbus-Executed-Version"] == "1"
    _error(_call(server, "ver-q:7"), 404, "Function.VersionNotFound")
    _error(_call(server, "ver-q:nope"), 404, "Function.AliasNotFound")
    _error(_call(server, "missing:prod"), 404, "Function.NotFound")
    _error(
        server.http.put("/v1/functions/ver-q/aliases/beta", json={"version": 9}),
        404,
        "Function.VersionNotFound",
    )
    _error(
        server.http.put(
            "/v1/functions/ver-q/aliases/beta", json={"version": 1, "weights": {"1": 0.5}}
        ),
        400,
        "Function.InvalidSetting",
    )
    _error(
        server.http.put("/v1/functions/ver-q/aliases/123", json={"version": 1}),
        400,
        "Function.InvalidQualifier",
    )
    _error(_call(server, "ver-q:bad!"), 400, "Function.InvalidQualifier")
    _error(
        server.http.post("/v1/functions/ver-q:prod/invocations?qualifier=1", json={}),
        400,
        "Function.InvalidQualifier",
    )
    _error(
        server.http.put("/v1/functions/ver-q/provisioned/$LATEST", json={"count": 1}),
        400,
        "Function.InvalidQualifier",
    )


def test_alias_weights_split_traffic_as_configured(server: Server) -> None:
    _deploy(server, "ver-split", "a")
    _publish(server, "ver-split")
    _deploy(server, "ver-split", "b")
    _publish(server, "ver-split")
    r = server.http.put(
        "/v1/functions/ver-split/aliases/canary", json={"version": 1, "weights": {"2": 0.2}}
    )
    assert r.status_code == 201, r.text
    n = 400
    with ThreadPoolExecutor(max_workers=4) as pool:
        ran = Counter(pool.map(lambda _: _ok(server, "ver-split:canary")["version"], range(n)))
    # Binomial(400, 0.2): mean 80, sd 8. Four standard deviations either way.
    assert set(ran) == {"1", "2"}, ran
    assert 48 <= ran["2"] <= 112, ran
    # Rollback is moving the alias back: all calls on version 1 again.
    server.http.put("/v1/functions/ver-split/aliases/canary", json={"version": 1})
    assert {_ok(server, "ver-split:canary")["version"] for _ in range(30)} == {"1"}


def test_moving_an_alias_under_load_fails_no_call(server: Server) -> None:
    _deploy(server, "ver-move", "a", max_instances=4, timeout_s=10)
    _publish(server, "ver-move")
    _deploy(server, "ver-move", "b", max_instances=4, timeout_s=10)
    _publish(server, "ver-move")
    server.http.put("/v1/functions/ver-move/aliases/prod", json={"version": 1})
    stop = threading.Event()
    results: list[httpx.Response] = []

    def caller() -> None:
        with httpx.Client(base_url=server.url, headers=dict(server.http.headers), timeout=30) as c:
            while not stop.is_set():
                results.append(
                    c.post("/v1/functions/ver-move:prod/invocations", json={"sleep": 0.02})
                )

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for target in (2, 1, 2, 1, 2):
            time.sleep(0.4)
            r = server.http.put("/v1/functions/ver-move/aliases/prod", json={"version": target})
            assert r.status_code == 200, r.text
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(results) > 30
    bad = [r.text for r in results if r.status_code != 200 or r.json()["status"] != "succeeded"]
    assert not bad, bad[:3]
    ids = [r.json()["request_id"] for r in results]
    assert len(ids) == len(set(ids))  # nothing ran twice
    assert {r.json()["version"] for r in results} == {"1", "2"}
    # After the last move every new call runs version 2.
    assert {_ok(server, "ver-move:prod")["version"] for _ in range(10)} == {"2"}


def test_reserved_concurrency_caps_all_versions_and_zero_disables(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(queue_timeout_s=0.5)
    _deploy(srv, "ver-res", "a", timeout_s=10)
    _publish(srv, "ver-res")
    r = srv.http.put("/v1/functions/ver-res/concurrency", json={"reserved": 1})
    assert r.status_code == 200 and r.json() == {"reserved": 1}
    assert srv.http.get("/v1/functions/ver-res").json()["reserved_concurrency"] == 1
    # One slow call on version 1 holds the only place; a call on $LATEST waits, then 429.
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(_call, srv, "ver-res:1", {"sleep": 2})
        time.sleep(0.5)
        throttled = _call(srv, "ver-res", {})
        assert slow.result().status_code == 200
    _error(throttled, 429, "Function.ReservedConcurrencyExceeded")
    assert int(throttled.headers["Retry-After"]) >= 1
    # Nothing else is held back: the next call runs.
    assert _call(srv, "ver-res", {}).status_code == 200

    srv.http.put("/v1/functions/ver-res/concurrency", json={"reserved": 0})
    disabled = _call(srv, "ver-res:1", {})
    _error(disabled, 429, "Function.ReservedConcurrencyExceeded")
    assert "disabled" in disabled.json()["error"]["message"]
    assert srv.http.delete("/v1/functions/ver-res/concurrency").status_code == 204
    assert srv.http.get("/v1/functions/ver-res").json()["reserved_concurrency"] is None
    assert _call(srv, "ver-res:1", {}).status_code == 200


def test_provisioned_instances_are_ready_replaced_and_never_cold(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(keepalive_s=0.3, last_keepalive_s=0.3, scale_in_cooldown_s=0)
    _deploy(srv, "ver-prov", "a", timeout_s=10)
    _publish(srv, "ver-prov")
    srv.http.put("/v1/functions/ver-prov/aliases/live", json={"version": 1})
    r = srv.http.put("/v1/functions/ver-prov/provisioned/live", json={"count": 3})
    assert r.status_code == 200 and r.json()["requested"] == 3, r.text

    def ready() -> int:
        found = srv.http.get("/v1/functions/ver-prov/provisioned").json()["provisioned"]
        return int(found[0]["ready"]) if found else 0

    assert wait_until(lambda: ready() == 3, timeout=15)
    assert len(instance_pids(srv.data_dir)) == 3
    # Idle far past the keep-alive, they stay.
    time.sleep(1.0)
    assert len(instance_pids(srv.data_dir)) == 3
    # A step of three concurrent callers: no cold start at all.
    with ThreadPoolExecutor(max_workers=3) as pool:
        out = list(pool.map(lambda _: _ok(srv, "ver-prov:live", {"sleep": 0.3}), range(3)))
    assert [o["cold_start"] for o in out] == [False] * 3, out
    # One dies: it is replaced without any call.
    victim = next(iter(instance_pids(srv.data_dir)))
    os.kill(victim, signal.SIGKILL)
    assert wait_until(
        lambda: (
            victim not in instance_pids(srv.data_dir)
            and len(instance_pids(srv.data_dir)) == 3
            and ready() == 3
        ),
        timeout=15,
    )
    # Provisioned instances come back after a restart of the server.
    srv.stop()
    srv.start()
    assert wait_until(lambda: ready() == 3, timeout=15)
    # Removing the setting lets them go with the keep-alive.
    assert srv.http.delete("/v1/functions/ver-prov/provisioned/live").status_code == 204
    assert wait_until(lambda: not instance_pids(srv.data_dir), timeout=15)


def test_prewarm_on_deploy_and_publish(server: Server) -> None:
    sha = server.upload(make_zip({"app.py": CODE.format(release="warm")}))
    body = {"runtime": "python3.11", "handler": "app.handler", "code_sha256": sha}
    r = server.http.put("/v1/functions/ver-warm?prewarm=true", json=body)
    assert r.status_code == 201, r.text
    time.sleep(1.0)  # the instance starts without any call
    assert _ok(server, "ver-warm")["cold_start"] is False
    r = server.http.post("/v1/functions/ver-warm/versions", json={"prewarm": True})
    assert r.status_code == 201
    time.sleep(1.0)
    assert _ok(server, "ver-warm:1")["cold_start"] is False


def test_autoscaling_out_with_load_and_back_in_when_idle(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(keepalive_s=0.5, last_keepalive_s=1.5, scale_in_cooldown_s=0.5)
    _deploy(srv, "ver-auto", "a", max_instances=6, timeout_s=10)
    with ThreadPoolExecutor(max_workers=6) as pool:
        out = list(pool.map(lambda _: _ok(srv, "ver-auto", {"sleep": 0.5}), range(6)))
    assert len({o["result"]["instance"] for o in out}) == 6  # one instance per concurrent call
    assert len(instance_pids(srv.data_dir)) == 6
    # Idle: extras go after the keep-alive (and cool-down), the last one later.
    assert wait_until(lambda: len(instance_pids(srv.data_dir)) == 1, timeout=10)
    assert wait_until(lambda: not instance_pids(srv.data_dir), timeout=10)
