"""Triggers with the SCF flavour against a real server: code written for Tencent SCF gets
SCF's timer and API gateway events and answers with SCF's integration response."""

from __future__ import annotations

from tests.integration.harness import Server, recorded_events, wait_until

SCF_FUNCTION = """
import json

def main_handler(event, context):
    print("EVENT " + json.dumps(event))
    if "httpMethod" in event:
        return {
            "isBase64Encoded": False,
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Fn": context["function_name"]},
            "body": "hello " + event["queryString"].get("who", "?") + " " + event["body"],
        }
    return "ok"
"""


def test_scf_timer_event(server: Server) -> None:
    server.deploy("scf-timer", {"index.py": SCF_FUNCTION}, handler="index.main_handler")
    r = server.http.post(
        "/v1/functions/scf-timer/triggers",
        json={
            "name": "EveryDay",
            "type": "timer",
            "config": {"schedule": "* * * * * *", "payload": "user msg", "flavour": "scf"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["config"]["flavour"] == "scf"
    assert wait_until(lambda: len(recorded_events(server, "scf-timer")) >= 1, timeout=15)
    event = recorded_events(server, "scf-timer")[0]
    assert set(event) == {"Type", "TriggerName", "Time", "Message"}
    assert event["Type"] == "Timer" and event["TriggerName"] == "EveryDay"
    assert event["Message"] == "user msg" and event["Time"].endswith("Z")
    server.http.delete("/v1/functions/scf-timer/triggers/EveryDay")


def test_scf_api_gateway_event_and_integration_response(server: Server) -> None:
    server.deploy("scf-http", {"index.py": SCF_FUNCTION}, handler="index.main_handler")
    r = server.http.post(
        "/v1/functions/scf-http/triggers",
        json={"name": "apigw", "type": "http", "config": {"auth": "public", "flavour": "scf"}},
    )
    assert r.status_code == 201, r.text
    answer = server.http.post(
        "/fn/default/scf-http/items/9?who=world&x=1",
        content=b'{"n": 1}',
        headers={"Content-Type": "application/json", "X-Trace": "abc"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.text == 'hello world {"n": 1}'
    assert answer.headers["x-fn"] == "scf-http"
    (event,) = recorded_events(server, "scf-http")
    assert event["httpMethod"] == "POST" and event["path"] == "/fn/default/scf-http/items/9"
    assert event["pathParameters"] == {"path": "items/9"}
    assert event["queryString"] == {"who": "world", "x": "1"}
    assert event["headers"]["x-trace"] == "abc"
    assert event["requestContext"]["httpMethod"] == "POST"
    assert event["requestContext"]["requestId"] == answer.headers["x-nimbus-request-id"]


def test_unknown_flavour_is_refused(server: Server) -> None:
    server.deploy("scf-bad", {"index.py": SCF_FUNCTION}, handler="index.main_handler")
    r = server.http.post(
        "/v1/functions/scf-bad/triggers",
        json={"name": "t", "type": "http", "config": {"flavour": "azure"}},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "Trigger.Invalid"
    assert "scf" in r.json()["error"]["message"]
