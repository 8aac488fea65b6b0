"""Triggers against a real server: timers that fire once per tick across restarts, and
function URLs served by unmodified Mangum (FastAPI) and apig-wsgi (Flask) handlers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from tests.integration.harness import RECORDER, Server, recorded_events, vendored, wait_until


def _timer(srv: Server, function: str, name: str, **config: Any) -> httpx.Response:
    return srv.http.post(
        f"/v1/functions/{function}/triggers",
        json={"name": name, "type": "timer", "config": config},
    )


def test_trigger_crud_and_errors(server: Server) -> None:
    server.deploy("trig-crud", {"app.py": RECORDER})
    r = _timer(server, "trig-crud", "nightly", schedule="0 3 * * *", timezone="Asia/Shanghai")
    assert r.status_code == 201, r.text
    assert r.json()["config"]["timezone"] == "Asia/Shanghai" and r.json()["enabled"] is True
    again = _timer(server, "trig-crud", "nightly", schedule="0 3 * * *")
    assert again.status_code == 409 and again.json()["error"]["code"] == "Trigger.AlreadyExists"
    for bad in (
        {"schedule": "cron(0 9 * * ? *)"},
        {"schedule": "rate(1 minutes)"},
        {"schedule": "0 9 * * *", "timezone": "Mars/Olympus"},
        {"schedule": "0 9 * * *", "catch_up": "sometimes"},
        {"timezone": "UTC"},
    ):
        r = _timer(server, "trig-crud", "bad", **bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "Trigger.Invalid", r.text
        assert len(r.json()["error"]["message"]) > 20
    listed = server.http.get("/v1/functions/trig-crud/triggers").json()["triggers"]
    assert [t["name"] for t in listed] == ["nightly"]
    r = server.http.patch("/v1/functions/trig-crud/triggers/nightly", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert server.http.delete("/v1/functions/trig-crud/triggers/nightly").status_code == 204
    missing = server.http.get("/v1/functions/trig-crud/triggers/nightly")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Trigger.NotFound"
    url = {"type": "http", "config": {"auth": "public"}}
    first = server.http.post("/v1/functions/trig-crud/triggers", json={"name": "u1", **url})
    assert first.status_code == 201, first.text
    second = server.http.post("/v1/functions/trig-crud/triggers", json={"name": "u2", **url})
    assert second.status_code == 409  # one URL per function
    assert second.json()["error"]["code"] == "Trigger.AlreadyExists"
    nofn = _timer(server, "no-such-fn", "t", schedule="0 3 * * *")
    assert nofn.status_code == 404 and nofn.json()["error"]["code"] == "Function.NotFound"


def test_timer_fires_each_tick_once_across_restarts(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    srv.deploy("trig-tick", {"app.py": RECORDER})
    r = _timer(srv, "trig-tick", "every-second", schedule="* * * * * *", payload={"job": "x"})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: len(recorded_events(srv, "trig-tick")) >= 3, timeout=15)
    first = recorded_events(srv, "trig-tick")
    # The scheduled event is EventBridge's shape, with the payload as detail.
    parsed = EventBridgeModel(**first[0])
    assert parsed.detail == {"job": "x"} and parsed.detail_type == "Scheduled Event"

    # Down for 3 s (SIGTERM), then up: the missed ticks fire once ("latest"), then on time.
    srv.stop()
    down = time.time()
    time.sleep(3)
    srv.start()
    assert wait_until(
        lambda: any(
            datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() > down + 4
            for e in recorded_events(srv, "trig-tick")
        ),
        timeout=20,
    )
    events = recorded_events(srv, "trig-tick")
    times = [e["time"] for e in events]
    assert len(times) == len(set(times)), "a tick fired twice"
    assert len({e["id"] for e in events}) == len(events)
    stamps = sorted(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in times)
    during = [t for t in stamps if down + 0.5 < t < down + 3]
    assert len(during) <= 1, during  # the downtime's ticks collapse into one catch-up tick

    # Disabled: no more ticks.
    srv.http.patch("/v1/functions/trig-tick/triggers/every-second", json={"enabled": False})
    time.sleep(1.5)
    count = len(recorded_events(srv, "trig-tick"))
    time.sleep(2)
    assert len(recorded_events(srv, "trig-tick")) <= count + 1  # at most one already in flight


FASTAPI_APP = """
from fastapi import FastAPI, Response
from mangum import Mangum

app = FastAPI()

@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}

@app.post("/echo")
async def echo(body: dict, response: Response):
    response.set_cookie("seen", "yes")
    response.status_code = 201
    return {"got": body}

handler = Mangum(app, lifespan="off")
"""

FLASK_APP = """
from flask import Flask, request, jsonify
from apig_wsgi import make_lambda_handler

app = Flask(__name__)

@app.route("/hello/<name>", methods=["GET", "POST"])
def hello(name):
    return jsonify(hello=name, method=request.method, args=request.args.to_dict(),
                   cookie=request.cookies.get("c"))

@app.route("/bytes")
def raw():
    return app.response_class(bytes(range(256)), mimetype="application/octet-stream")

handler = make_lambda_handler(app, binary_support=True)
"""


def _url_trigger(srv: Server, function: str, auth: str) -> str:
    r = srv.http.post(
        f"/v1/functions/{function}/triggers",
        json={"name": "web", "type": "http", "config": {"auth": auth}},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["url"])


def test_function_url_with_mangum_and_fastapi(server: Server) -> None:
    files = {
        "app.py": FASTAPI_APP,
        **vendored("fastapi", "mangum"),
    }
    server.deploy("trig-fastapi", files, timeout_s=30, memory_mb=256)
    url = _url_trigger(server, "trig-fastapi", "public")
    assert url.endswith("/fn/default/trig-fastapi/")
    with httpx.Client(timeout=30) as anon:
        r = anon.get(url + "items/42", params={"q": "x y"})
        assert r.status_code == 200 and r.json() == {"item_id": 42, "q": "x y"}, r.text
        r = anon.post(url + "echo", json={"a": [1, 2]})
        assert r.status_code == 201 and r.json() == {"got": {"a": [1, 2]}}, r.text
        assert "seen=yes" in r.headers["set-cookie"]
        r = anon.get(url + "items/not-a-number")
        assert r.status_code == 422  # FastAPI's own answer, passed through
        assert anon.get(url + "nowhere").status_code == 404


def test_function_url_with_apig_wsgi_and_flask_needs_a_key(server: Server) -> None:
    files = {
        "app.py": FLASK_APP,
        **vendored(
            "flask",
            "werkzeug",
            "jinja2",
            "markupsafe",
            "itsdangerous",
            "click",
            "blinker",
            "apig_wsgi",
        ),
    }
    server.deploy("trig-flask", files, timeout_s=30)
    url = _url_trigger(server, "trig-flask", "key")
    with httpx.Client(timeout=30) as anon:
        r = anon.get(url + "hello/world")
        assert r.status_code == 401 and r.json()["error"]["code"] == "Auth.Unauthorized"
    r = server.http.post(
        url.replace(server.url, "") + "hello/world?x=1", headers={"Cookie": "c=v"}, json={}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"hello": "world", "method": "POST", "args": {"x": "1"}, "cookie": "v"}
    r = server.http.get(url.replace(server.url, "") + "bytes")
    assert r.status_code == 200 and r.content == bytes(range(256))
    # A key of another namespace learns nothing.
    server.http.post("/v1/namespaces", json={"name": "trig-other"})
    key = server.http.post(
        "/v1/keys", json={"namespace": "trig-other", "role": "invoker", "name": "t"}
    ).json()["secret"]
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as other:
        r = other.get(url + "hello/world")
        assert r.status_code == 404 and r.json()["error"]["code"] == "Function.NotFound"
    # Without an http trigger there is no URL at all.
    server.http.delete("/v1/functions/trig-flask/triggers/web")
    assert server.http.get(url.replace(server.url, "") + "hello/world").status_code == 404


def test_key_protected_url_does_not_hand_the_callers_key_to_the_function(
    server: Server,
) -> None:
    server.deploy("trig-nokey", {"app.py": RECORDER})
    url = _url_trigger(server, "trig-nokey", "key").replace(server.url, "")
    r = server.http.get(url + "x", headers={"X-Custom": "kept"})
    assert r.status_code == 200, r.text
    (event,) = recorded_events(server, "trig-nokey")
    assert event["headers"]["x-custom"] == "kept"
    assert "authorization" not in event["headers"]
    assert server.http.headers["Authorization"].split()[-1] not in json.dumps(event)
