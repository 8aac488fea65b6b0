"""``/metrics``: what ran, cold starts, metering, throttles and live instances, for
Prometheus, readable by admin keys only."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.integration.harness import Server

CODE = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return "ok"
"""


def _value(text: str, metric: str, **labels: str) -> float:
    """The sample of ``metric`` whose labels include ``labels`` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_meter_and_show_instances(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    srv.deploy("met", {"app.py": CODE}, memory_mb=256)
    for event in ({}, {}, {"fail": True}):
        srv.http.post("/v1/functions/met/invocations", json=event)
    srv.http.put("/v1/functions/met/concurrency", json={"reserved": 0})
    assert srv.http.post("/v1/functions/met/invocations", json={}).status_code == 429

    r = srv.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    fn = {"namespace": "default", "function": "met"}
    assert _value(text, "nimbus_invocations_total", **fn, outcome="succeeded") == 2
    assert _value(text, "nimbus_invocations_total", **fn, outcome="failed") == 1
    assert _value(text, "nimbus_cold_starts_total", **fn) == 1
    assert _value(text, "nimbus_invocation_duration_seconds_count", **fn) == 3
    # Metering: billed milliseconds (at least 1 each) times 0.25 GB.
    assert _value(text, "nimbus_billed_gb_seconds_total", **fn) >= 3 * 0.001 * 0.25
    code = "Function.ReservedConcurrencyExceeded"
    assert _value(text, "nimbus_throttles_total", **fn, code=code) == 1
    assert _value(text, "nimbus_instances", **fn, version="$LATEST", state="idle") == 1
    assert "nimbus_async_events" in text

    # Every namespace is in there: admin keys only.
    key = srv.http.post(
        "/v1/keys", json={"namespace": "default", "role": "developer", "name": "dev"}
    ).json()["secret"]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as dev:
        assert dev.get("/metrics").status_code == 403
    assert httpx.get(srv.url + "/metrics").status_code == 401
