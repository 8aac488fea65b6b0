"""SCF-flavoured event shapes, checked field by field against SCF's documented formats."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from nimbus.triggers.http_event import HttpRequest
from nimbus.triggers.scf_events import scf_api_gateway_event, scf_cos_event, scf_timer_event

TICK = datetime(2026, 2, 21, 11, 49, tzinfo=UTC)


def test_timer_message_is_text() -> None:
    assert scf_timer_event("EveryDay", TICK, "user msg") == {
        "Type": "Timer",
        "TriggerName": "EveryDay",
        "Time": "2026-02-21T11:49:00Z",
        "Message": "user msg",
    }
    assert scf_timer_event("t", TICK, {"job": 1})["Message"] == '{"job": 1}'
    assert scf_timer_event("t", TICK, {})["Message"] == ""


def _request(**kw: object) -> HttpRequest:
    base: dict[str, object] = {
        "method": "post",
        "raw_path": "/users/7",
        "raw_query": b"foo=bar&bob=alice&bob=carol&sp=a+b",
        "headers": [
            (b"Host", b"example.test"),
            (b"Content-Type", b"application/json"),
            (b"X-Multi", b"1"),
            (b"x-multi", b"2"),
        ],
        "body": b'{"test":"body"}',
        "source_ip": "10.0.2.14",
    }
    base.update(kw)
    return HttpRequest(**base)  # type: ignore[arg-type]


def test_api_gateway_event_fields() -> None:
    event = scf_api_gateway_event(
        _request(), request_id="rid-1", service_id="service-ns-fn", path_prefix="/fn/ns/fn"
    )
    ctx = event["requestContext"]
    assert ctx["serviceId"] == "service-ns-fn" and ctx["requestId"] == "rid-1"
    assert ctx["httpMethod"] == "POST" and ctx["sourceIp"] == "10.0.2.14"
    assert ctx["path"] == "/fn/ns/fn/{path}" and ctx["stage"] == "release"
    assert event["path"] == "/fn/ns/fn/users/7" and event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"path": "users/7"}
    assert event["headers"]["host"] == "example.test"
    assert event["headers"]["x-multi"] == "1,2"  # repeated headers joined
    assert event["queryString"] == {"foo": "bar", "bob": "alice,carol", "sp": "a b"}
    assert event["queryStringParameters"] == event["queryString"]
    assert event["body"] == '{"test":"body"}' and event["isBase64Encoded"] is False


def test_api_gateway_binary_body_and_root_path() -> None:
    raw = bytes(range(256))
    event = scf_api_gateway_event(
        _request(raw_path="", body=raw, headers=[(b"content-type", b"image/png")]),
        request_id="r",
        service_id="s",
        path_prefix="/fn/ns/fn",
    )
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == raw
    assert event["path"] == "/fn/ns/fn" and event["pathParameters"] == {"path": ""}


def test_cos_event_record() -> None:
    event = scf_cos_event(
        bucket="photos",
        key="a/b.jpg",
        size=1029,
        event_name="ObjectCreated:Put",
        time=TICK,
        request_id="0a1b2c3d-0000",
        source_ip="127.0.0.1",
        endpoint="http://127.0.0.1:8080/s3",
        event_queue="nimbus:default/thumbs/$LATEST",
    )
    (record,) = event["Records"]
    assert record["cos"]["cosObject"]["key"] == "/1250000000/photos/a/b.jpg"
    assert record["cos"]["cosObject"]["url"] == "http://127.0.0.1:8080/s3/photos/a/b.jpg"
    assert record["cos"]["cosObject"]["size"] == 1029
    assert record["cos"]["cosBucket"]["name"] == "photos"
    assert record["event"]["eventName"] == "cos:ObjectCreated:Put"
    assert record["event"]["eventSource"] == "qcs::cos"
    assert record["event"]["eventTime"] == int(TICK.timestamp())
    assert record["event"]["reqid"] == 0x0A1B2C3D
