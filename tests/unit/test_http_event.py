"""HTTP function events: payload 2.0 events in, Lambda-style results out.

Events are checked against aws-lambda-powertools' parser models, and both directions
are proven against unmodified adapters run in-process: Mangum around a FastAPI app and
apig-wsgi around a Flask app.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from apig_wsgi import make_lambda_handler
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    LambdaFunctionUrlModel,
)
from fastapi import Cookie, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from flask import Flask, abort, jsonify, make_response
from flask import request as flask_request
from mangum import Mangum
from pydantic import BaseModel

from nimbus.triggers import http_event
from nimbus.triggers.http_event import (
    INVALID_RESPONSE_CODE,
    HttpRequest,
    HttpResponse,
    build_event,
    format_request_time,
    is_textual_content_type,
    parse_response,
)

NOW = datetime(2020, 3, 12, 19, 3, 58, 390_000, tzinfo=UTC)
DOMAIN = "abc123.fn.nimbus.test"
# A PNG signature and header chunk start: not UTF-8 (0x89), the classic binary body.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\xff\xfe"

Headers = Sequence[tuple[bytes, bytes]]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def event_for(
    method: str = "GET",
    path: str = "/",
    query: bytes = b"",
    headers: Headers = (),
    body: bytes = b"",
    **options: Any,
) -> dict[str, Any]:
    all_headers = [(b"host", DOMAIN.encode()), (b"user-agent", b"test-agent/1.0"), *headers]
    request = HttpRequest(
        method=method,
        raw_path=path,
        raw_query=query,
        headers=all_headers,
        body=body,
        source_ip="203.0.113.7",
    )
    options.setdefault("request_id", "req-1")
    options.setdefault("now", NOW)
    options.setdefault("domain_name", DOMAIN)
    return build_event(request, **options)


def validate(event: dict[str, Any]) -> None:
    """Both parser models accept the event, after a JSON round trip as it travels."""
    wire = json.loads(json.dumps(event))
    APIGatewayProxyEventV2Model.model_validate(wire)
    LambdaFunctionUrlModel.model_validate(wire)


def values(response: HttpResponse, name: str) -> list[str]:
    return [v.decode("latin-1") for k, v in response.headers if k == name.encode()]


def value(response: HttpResponse, name: str) -> str:
    found = values(response, name)
    assert len(found) == 1, (name, response.headers)
    return found[0]


def error_of(response: HttpResponse) -> dict[str, str]:
    assert response.status == 502
    assert value(response, "content-type") == "application/json"
    error: dict[str, str] = json.loads(response.body)["error"]
    assert error["code"] == INVALID_RESPONSE_CODE
    return error


# -- build_event ----------------------------------------------------------------------


def test_get_with_query_cookies_and_repeated_headers_is_exactly_payload_2_0() -> None:
    event = event_for(
        path="/my/path",
        query=b"parameter1=value1&parameter1=value2&parameter2=value",
        headers=[
            (b"Header1", b"value1"),
            (b"header2", b"value1"),
            (b"cookie", b"cookie1=a; cookie2=b"),
            (b"header2", b"value2"),
            (b"Cookie", b"cookie3=c"),
        ],
    )

    assert event == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/my/path",
        "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
        "cookies": ["cookie1=a", "cookie2=b", "cookie3=c"],
        "headers": {
            "host": DOMAIN,
            "user-agent": "test-agent/1.0",
            "header1": "value1",
            "header2": "value1,value2",
        },
        "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abc123",
            "domainName": DOMAIN,
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": "/my/path",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "test-agent/1.0",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1584039838390,
        },
        "isBase64Encoded": False,
    }
    validate(event)
    parsed = LambdaFunctionUrlModel.model_validate(event)
    assert parsed.requestContext.timeEpoch == NOW
    assert parsed.pathParameters is None


def test_post_json_body_travels_as_text() -> None:
    payload = {"name": "widget", "price": 2.5, "note": "café"}
    event = event_for(
        "post",
        "/items",
        headers=[(b"content-type", b"application/json; charset=utf-8")],
        body=json.dumps(payload, ensure_ascii=False).encode(),
    )

    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == payload
    assert "queryStringParameters" not in event
    assert "cookies" not in event
    validate(event)


def test_binary_body_travels_as_base64() -> None:
    event = event_for("PUT", "/upload", headers=[(b"content-type", b"image/png")], body=PNG)

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == PNG
    validate(event)


def test_empty_body_is_left_out() -> None:
    event = event_for("DELETE", "/items/1", headers=[(b"content-type", b"application/json")])

    assert "body" not in event
    assert event["isBase64Encoded"] is False
    validate(event)


@pytest.mark.parametrize(
    ("content_type", "textual"),
    [
        ("text/plain", True),
        ("text/html; charset=utf-8", True),
        ("TEXT/CSV", True),
        ("application/json", True),
        ("application/vnd.api+json", True),
        ("application/problem+json", True),
        ("application/xml", True),
        ("image/svg+xml", True),
        ("application/x-www-form-urlencoded", True),
        ("application/javascript", True),
        ("text/javascript", True),
        ("application/octet-stream", False),
        ("image/png", False),
        ("multipart/form-data; boundary=x", False),
        ("", False),
        (None, False),
    ],
)
def test_textual_content_types(content_type: str | None, textual: bool) -> None:
    assert is_textual_content_type(content_type) is textual


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([(b"content-type", b"application/octet-stream")], b"plain ascii"),
        ([], b"no content type at all"),
        ([(b"content-type", b"text/plain")], b"not utf-8: \xff\xfe"),
    ],
)
def test_non_textual_or_non_utf8_bodies_are_base64(headers: Headers, body: bytes) -> None:
    event = event_for("POST", headers=headers, body=body)

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body
    validate(event)


def test_form_body_travels_as_text() -> None:
    form = b"name=a+b&x=%2F"
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    event = event_for("POST", headers=headers, body=form)

    assert event["body"] == form.decode()
    assert event["isBase64Encoded"] is False


def test_query_parameters_are_form_decoded_and_raw_string_kept() -> None:
    raw = b"q=hello+world&plus=%2B&flag&=anon&&empty=&caf%C3%A9=%E2%9C%93&q=again"
    event = event_for(query=raw)

    assert event["rawQueryString"] == raw.decode()
    assert event["queryStringParameters"] == {
        "q": "hello world,again",
        "plus": "+",
        "flag": "",
        "": "anon",
        "empty": "",
        "café": "✓",
    }
    validate(event)


def test_path_is_kept_percent_encoded_and_rooted() -> None:
    assert event_for(path="")["rawPath"] == "/"
    assert event_for(path="a/b")["rawPath"] == "/a/b"
    event = event_for(path="/files/hello%20world.txt")
    assert event["rawPath"] == "/files/hello%20world.txt"
    assert event["requestContext"]["http"]["path"] == "/files/hello%20world.txt"


def test_header_names_lowercased_and_bytes_decoded() -> None:
    event = event_for(
        headers=[
            (b"X-Utf8", "naïve ✓".encode()),
            (b"X-Latin1", b"caf\xe9"),  # not UTF-8: read as Latin-1, as ASGI defines
        ]
    )

    assert event["headers"]["x-utf8"] == "naïve ✓"
    assert event["headers"]["x-latin1"] == "café"


def test_cookie_header_splitting_tolerates_missing_spaces_and_empties() -> None:
    event = event_for(headers=[(b"cookie", b"a=1;b=2;  ; c=3")])

    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_user_agent_defaults_to_empty() -> None:
    request = HttpRequest("GET", "/", b"", [], b"", "198.51.100.1", protocol="HTTP/2")
    event = build_event(request, request_id="r", now=NOW, domain_name="localhost")

    assert event["requestContext"]["http"]["userAgent"] == ""
    assert event["requestContext"]["http"]["protocol"] == "HTTP/2"
    assert event["headers"] == {}
    validate(event)


def test_ids_and_placeholders_can_be_chosen() -> None:
    event = event_for(account_id="123456789012", api_id="orders", stage="live", route_key="ANY /")

    ctx = event["requestContext"]
    assert (ctx["accountId"], ctx["apiId"], ctx["stage"]) == ("123456789012", "orders", "live")
    assert event["routeKey"] == ctx["routeKey"] == "ANY /"


@pytest.mark.parametrize(
    ("domain", "prefix"),
    [
        ("abcdefg.lambda-url.us-east-1.on.aws", "abcdefg"),
        ("localhost", "localhost"),
        ("localhost:8080", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1:9000", "127.0.0.1"),
        ("[::1]:8080", "[::1]"),
        ("::1", "::1"),
    ],
)
def test_domain_prefix(domain: str, prefix: str) -> None:
    ctx = event_for(domain_name=domain)["requestContext"]

    assert ctx["domainName"] == domain
    assert ctx["domainPrefix"] == ctx["apiId"] == prefix


def test_time_is_utc_and_locale_independent() -> None:
    months = [format_request_time(datetime(2024, m, 5, tzinfo=UTC))[3:6] for m in range(1, 13)]
    assert "/".join(months) == "Jan/Feb/Mar/Apr/May/Jun/Jul/Aug/Sep/Oct/Nov/Dec"

    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    ctx = event_for(now=plus_two)["requestContext"]
    assert ctx["time"] == "12/Mar/2020:19:03:58 +0000"
    assert ctx["timeEpoch"] == 1584039838390


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        event_for(now=datetime(2020, 3, 12, 19, 3, 58))


def test_public_names_exist() -> None:
    for name in http_event.__all__:
        assert hasattr(http_event, name), name


# -- parse_response: the rules --------------------------------------------------------


def test_full_response_object() -> None:
    response = parse_response(
        json.dumps(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "text/html", "My-Custom-Header": "Custom Value"},
                "body": "<p>café</p>",
                "cookies": ["c1=v1; Expires=21 Oct 2021 07:48 GMT", "c2=v2; Max-Age=78000"],
                "isBase64Encoded": False,
            }
        ).encode()
    )

    assert response == HttpResponse(
        201,
        [
            (b"content-type", b"text/html"),
            (b"my-custom-header", b"Custom Value"),
            (b"set-cookie", b"c1=v1; Expires=21 Oct 2021 07:48 GMT"),
            (b"set-cookie", b"c2=v2; Max-Age=78000"),
        ],
        "<p>café</p>".encode(),
    )


def test_status_only_defaults_content_type_and_empty_body() -> None:
    response = parse_response(b'{"statusCode": 204}')

    assert response == HttpResponse(204, [(b"content-type", b"application/json")], b"")


def test_null_members_mean_absent() -> None:
    payload = {
        "statusCode": 200,
        "headers": None,
        "multiValueHeaders": None,
        "cookies": None,
        "body": None,
        "isBase64Encoded": None,
    }
    response = parse_response(json.dumps(payload).encode())

    assert response == HttpResponse(200, [(b"content-type", b"application/json")], b"")


def test_base64_body_is_decoded_even_with_line_breaks() -> None:
    encoded = base64.encodebytes(PNG * 10).decode()  # MIME style: a newline every 76 chars
    assert "\n" in encoded
    payload = {
        "statusCode": 200,
        "headers": {"content-type": "image/png"},
        "body": encoded,
        "isBase64Encoded": True,
    }
    response = parse_response(json.dumps(payload).encode())

    assert response.body == PNG * 10
    assert value(response, "content-type") == "image/png"


def test_text_body_is_utf8_and_not_base64_decoded_when_flag_false() -> None:
    payload = {"statusCode": 200, "body": "aGVsbG8= ✓", "isBase64Encoded": False}

    assert parse_response(json.dumps(payload).encode()).body == "aGVsbG8= ✓".encode()


def test_multi_value_headers_repeat_and_win_over_headers() -> None:
    payload = {
        "statusCode": 200,
        "headers": {"X-One": "1", "Vary": "Cookie", "content-type": "text/plain"},
        "multiValueHeaders": {"vary": ["Accept", "Origin"], "X-Many": ["a", "b"]},
    }
    response = parse_response(json.dumps(payload).encode())

    assert response.headers == [
        (b"x-one", b"1"),
        (b"content-type", b"text/plain"),
        (b"vary", b"Accept"),
        (b"vary", b"Origin"),
        (b"x-many", b"a"),
        (b"x-many", b"b"),
    ]


def test_framing_headers_are_left_to_the_server() -> None:
    payload = {
        "statusCode": 200,
        "headers": {"Content-Length": "999", "Transfer-Encoding": "chunked", "X-Keep": "1"},
        "multiValueHeaders": {"Connection": ["close"]},
        "body": "hi",
    }
    response = parse_response(json.dumps(payload).encode())

    assert response.headers == [(b"x-keep", b"1"), (b"content-type", b"application/json")]
    assert response.body == b"hi"


def test_set_cookie_in_headers_is_kept_beside_cookies() -> None:
    payload = {"statusCode": 200, "headers": {"Set-Cookie": "a=1"}, "cookies": ["b=2"]}

    assert values(parse_response(json.dumps(payload).encode()), "set-cookie") == ["a=1", "b=2"]


def test_non_latin1_header_value_is_sent_as_utf8() -> None:
    payload = {"statusCode": 200, "headers": {"x-latin": "café", "x-emoji": "✓"}}
    response = parse_response(json.dumps(payload).encode())

    assert (b"x-latin", "café".encode("latin-1")) in response.headers
    assert (b"x-emoji", "✓".encode()) in response.headers


def test_unknown_members_are_ignored() -> None:
    response = parse_response(b'{"statusCode": 202, "body": "ok", "extra": [1, 2]}')

    assert (response.status, response.body) == (202, b"ok")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"message": "Hello, world!"}',
        b'{\n  "message": "Hello, world!"\n}',
        b'"Hello, world!"',
        b"[1, 2, 3]",
        b"42",
        b"3.5",
        b"true",
        b"null",
        b"{}",
        b'{"statuscode": 404}',
    ],
)
def test_other_json_values_are_a_200_with_that_json(payload: bytes) -> None:
    response = parse_response(payload)

    assert response == HttpResponse(200, [(b"content-type", b"application/json")], payload)


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"Hello, plain text", "text/plain; charset=utf-8"),
        ("héllo ✓".encode(), "text/plain; charset=utf-8"),
        (b"", "text/plain; charset=utf-8"),
        (b"{not json", "text/plain; charset=utf-8"),
        (b"NaN", "text/plain; charset=utf-8"),
        (b"\xff\xfe\x00binary", "text/plain"),
    ],
)
def test_non_json_results_are_a_200_plain_text(payload: bytes, content_type: str) -> None:
    response = parse_response(payload)

    assert response == HttpResponse(200, [(b"content-type", content_type.encode())], payload)


@pytest.mark.parametrize(
    ("result", "fragment"),
    [
        ({"statusCode": "200"}, 'statusCode must be an integer from 100 to 599, got "200"'),
        ({"statusCode": 200.0}, "statusCode must be an integer from 100 to 599, got 200.0"),
        ({"statusCode": True}, "statusCode must be an integer from 100 to 599, got true"),
        ({"statusCode": None}, "statusCode must be an integer from 100 to 599, got null"),
        ({"statusCode": 99}, "got 99"),
        ({"statusCode": 600}, "got 600"),
        ({"statusCode": 200, "headers": ["a"]}, 'headers must be an object of strings, got ["a"]'),
        ({"statusCode": 200, "headers": "x: y"}, "headers must be an object of strings"),
        ({"statusCode": 200, "headers": {"x": 1}}, "headers['x'] must be a string, got 1"),
        ({"statusCode": 200, "headers": {"x": None}}, "headers['x'] must be a string, got null"),
        (
            {"statusCode": 200, "multiValueHeaders": []},
            "multiValueHeaders must be an object of string arrays, got []",
        ),
        (
            {"statusCode": 200, "multiValueHeaders": {"x": "a"}},
            "multiValueHeaders['x'] must be an array of strings",
        ),
        (
            {"statusCode": 200, "multiValueHeaders": {"x": ["a", 2]}},
            "multiValueHeaders['x'] must be an array of strings",
        ),
        ({"statusCode": 200, "cookies": "a=1"}, 'cookies must be an array of strings, got "a=1"'),
        ({"statusCode": 200, "cookies": ["a=1", 2]}, "cookies must be an array of strings"),
        ({"statusCode": 200, "body": {"a": 1}}, 'body must be a string, got {"a": 1}'),
        ({"statusCode": 200, "body": 12}, "body must be a string, got 12"),
        (
            {"statusCode": 200, "body": "x", "isBase64Encoded": "true"},
            'isBase64Encoded must be true or false, got "true"',
        ),
        (
            {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
            "isBase64Encoded is true but body is not valid base64",
        ),
        (
            {"statusCode": 200, "body": "abc", "isBase64Encoded": True},
            "isBase64Encoded is true but body is not valid base64",
        ),
        (
            {"statusCode": 200, "headers": {"Bad Header": "x"}},
            "header name 'Bad Header' is not a valid HTTP field name",
        ),
        ({"statusCode": 200, "headers": {"": "x"}}, "header name '' is not a valid"),
        (
            {"statusCode": 200, "headers": {"x": "a\r\nInjected: 1"}},
            "header 'x' has a line break or NUL in its value",
        ),
        (
            {"statusCode": 200, "cookies": ["a=1\r\nX: y"]},
            "header 'set-cookie' has a line break or NUL",
        ),
        (
            {"statusCode": 200, "multiValueHeaders": {"x": ["a\x00"]}},
            "header 'x' has a line break or NUL",
        ),
    ],
)
def test_malformed_responses_are_a_502_saying_what_is_wrong(
    result: dict[str, Any], fragment: str
) -> None:
    error = error_of(parse_response(json.dumps(result).encode()))

    assert error["message"].startswith("The function returned a malformed HTTP response: ")
    assert fragment in error["message"]


def test_lone_surrogate_body_is_a_502() -> None:
    error = error_of(parse_response(b'{"statusCode": 200, "body": "bad \\ud800"}'))

    assert "body is not valid Unicode text" in error["message"]


def test_absurdly_nested_json_is_a_502() -> None:
    error = error_of(parse_response(b"[" * 100_000 + b"]" * 100_000))

    assert "nested too deeply" in error["message"]


def test_long_values_are_shortened_in_messages() -> None:
    error = error_of(parse_response(json.dumps({"statusCode": "x" * 500}).encode()))

    assert len(error["message"]) < 200
    assert error["message"].endswith("xxx....")


# -- Mangum around FastAPI ------------------------------------------------------------


class Item(BaseModel):
    name: str
    price: float


def fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.get("/items/{item_id}")
    def read_item(
        item_id: int,
        request: Request,
        q: str | None = None,
        tags: list[str] = Query(default=[]),  # noqa: B008
        session: str | None = Cookie(default=None),
        x_tag: str | None = Header(default=None),
    ) -> dict[str, Any]:
        return {
            "item_id": item_id,
            "q": q,
            "tags": tags,
            "session": session,
            "x_tag": x_tag,
            "client": request.client.host if request.client else None,
        }

    @api.post("/items", status_code=201)
    def create_item(item: Item, response: Response) -> Item:
        response.set_cookie("last_item", item.name)
        response.set_cookie("theme", "dark", httponly=True)
        return item

    @api.get("/files/{name}")
    def read_file(name: str) -> dict[str, str]:
        return {"name": name}

    @api.get("/logo.png")
    def logo() -> Response:
        return Response(content=PNG, media_type="image/png")

    @api.post("/digest")
    async def digest(request: Request) -> Response:
        data = await request.body()
        return Response(hashlib.sha256(data).digest(), media_type="application/octet-stream")

    @api.get("/page", response_class=HTMLResponse)
    def page() -> str:
        return "<h1>café</h1>"

    @api.get("/missing")
    def missing() -> None:
        raise HTTPException(status_code=404, detail="no such thing")

    @api.get("/teapot", status_code=418)
    def teapot() -> dict[str, str]:
        return {"short": "stout"}

    @api.delete("/items/{item_id}", status_code=204)
    def delete_item(item_id: int) -> Response:
        return Response(status_code=204)

    return api


@pytest.fixture
def mangum_handler() -> Iterator[Handler]:
    """Mangum runs on the thread's current loop: give it one, then leave no trace."""
    previous_policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield Mangum(fastapi_app(), lifespan="off")
    finally:
        loop.close()
        asyncio.set_event_loop_policy(previous_policy)


def call(handler: Handler, event: dict[str, Any]) -> HttpResponse:
    validate(event)
    result = handler(event, None)
    return parse_response(json.dumps(result).encode())


def test_mangum_route_params_query_cookies_and_headers(mangum_handler: Handler) -> None:
    event = event_for(
        path="/items/42",
        query=b"q=hello+world&tags=a&tags=b",
        headers=[(b"cookie", b"session=abc; other=1"), (b"x-tag", b"one"), (b"x-tag", b"two")],
    )
    response = call(mangum_handler, event)

    assert response.status == 200
    assert value(response, "content-type") == "application/json"
    assert json.loads(response.body) == {
        "item_id": 42,
        "q": "hello world",
        "tags": ["a", "b"],
        "session": "abc",
        "x_tag": "one,two",
        "client": "203.0.113.7",
    }


def test_mangum_post_json_sets_cookies(mangum_handler: Handler) -> None:
    body = json.dumps({"name": "widget", "price": 2.5}).encode()
    event = event_for("POST", "/items", headers=[(b"content-type", b"application/json")], body=body)
    response = call(mangum_handler, event)

    assert response.status == 201
    assert json.loads(response.body) == {"name": "widget", "price": 2.5}
    cookies = values(response, "set-cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("last_item=widget;")
    assert cookies[1].startswith("theme=dark;")
    assert "HttpOnly" in cookies[1]


def test_mangum_percent_encoded_path(mangum_handler: Handler) -> None:
    response = call(mangum_handler, event_for(path="/files/hello%20w%C3%B6rld.txt"))

    assert json.loads(response.body) == {"name": "hello wörld.txt"}


def test_mangum_binary_response(mangum_handler: Handler) -> None:
    response = call(mangum_handler, event_for(path="/logo.png"))

    assert response.status == 200
    assert value(response, "content-type") == "image/png"
    assert response.body == PNG


def test_mangum_binary_request(mangum_handler: Handler) -> None:
    data = PNG * 100
    event = event_for(
        "POST", "/digest", headers=[(b"content-type", b"application/octet-stream")], body=data
    )
    assert event["isBase64Encoded"] is True
    response = call(mangum_handler, event)

    assert response.body == hashlib.sha256(data).digest()
    assert value(response, "content-type") == "application/octet-stream"


def test_mangum_text_response(mangum_handler: Handler) -> None:
    response = call(mangum_handler, event_for(path="/page"))

    assert value(response, "content-type") == "text/html; charset=utf-8"
    assert response.body == "<h1>café</h1>".encode()


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/missing", 404, {"detail": "no such thing"}),
        ("GET", "/teapot", 418, {"short": "stout"}),
        ("GET", "/nowhere", 404, {"detail": "Not Found"}),
        ("PATCH", "/items", 405, {"detail": "Method Not Allowed"}),
        ("GET", "/items/not-a-number", 422, None),
    ],
)
def test_mangum_status_codes(
    mangum_handler: Handler, method: str, path: str, status: int, body: Any
) -> None:
    response = call(mangum_handler, event_for(method, path))

    assert response.status == status
    if body is not None:
        assert json.loads(response.body) == body


def test_mangum_no_content(mangum_handler: Handler) -> None:
    response = call(mangum_handler, event_for("DELETE", "/items/7"))

    assert (response.status, response.body) == (204, b"")


# -- apig-wsgi around Flask -----------------------------------------------------------


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def read_item(item_id: int) -> Any:
        return jsonify(
            item_id=item_id,
            q=flask_request.args.get("q"),
            tags=flask_request.args.getlist("tags"),
            session=flask_request.cookies.get("session"),
            other=flask_request.cookies.get("other"),
            x_tag=flask_request.headers.get("X-Tag"),
            host=flask_request.host,
            remote_addr=flask_request.remote_addr,
        )

    @app.post("/items")
    def create_item() -> Any:
        item = flask_request.get_json()
        response = make_response(jsonify(item), 201)
        response.set_cookie("last_item", item["name"])
        response.set_cookie("theme", "dark", httponly=True)
        response.headers["X-Item-Count"] = "1"
        return response

    @app.get("/files/<name>")
    def read_file(name: str) -> Any:
        return jsonify(name=name)

    @app.get("/logo.png")
    def logo() -> Any:
        return app.response_class(PNG, mimetype="image/png")

    @app.post("/digest")
    def digest() -> Any:
        data = flask_request.get_data()
        return app.response_class(
            hashlib.sha256(data).digest(), mimetype="application/octet-stream"
        )

    @app.get("/form")
    def form_page() -> Any:
        return "<h1>café</h1>"

    @app.post("/form")
    def form_post() -> Any:
        return jsonify(dict(flask_request.form))

    @app.get("/missing")
    def missing() -> Any:
        abort(404)

    @app.get("/teapot")
    def teapot() -> Any:
        return jsonify(short="stout"), 418

    return app


@pytest.fixture
def wsgi_handler() -> Handler:
    return make_lambda_handler(flask_app())


def test_apig_wsgi_route_params_query_cookies_and_headers(wsgi_handler: Handler) -> None:
    event = event_for(
        path="/items/42",
        query=b"q=hello+world&tags=a&tags=b",
        headers=[(b"cookie", b"session=abc; other=1"), (b"x-tag", b"one"), (b"x-tag", b"two")],
    )
    response = call(wsgi_handler, event)

    assert response.status == 200
    assert value(response, "content-type") == "application/json"
    assert json.loads(response.body) == {
        "item_id": 42,
        "q": "hello world",
        "tags": ["a", "b"],
        "session": "abc",
        "other": "1",
        "x_tag": "one,two",
        "host": DOMAIN,
        "remote_addr": "203.0.113.7",
    }


def test_apig_wsgi_post_json_sets_cookies(wsgi_handler: Handler) -> None:
    body = json.dumps({"name": "widget", "price": 2.5}).encode()
    event = event_for("POST", "/items", headers=[(b"content-type", b"application/json")], body=body)
    response = call(wsgi_handler, event)

    assert response.status == 201
    assert json.loads(response.body) == {"name": "widget", "price": 2.5}
    assert value(response, "x-item-count") == "1"
    cookies = values(response, "set-cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("last_item=widget;")
    assert cookies[1].startswith("theme=dark;")
    assert "HttpOnly" in cookies[1]


def test_apig_wsgi_form_post(wsgi_handler: Handler) -> None:
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    event = event_for("POST", "/form", headers=headers, body=b"name=a+b&city=K%C3%B6ln")
    response = call(wsgi_handler, event)

    assert json.loads(response.body) == {"name": "a b", "city": "Köln"}


def test_apig_wsgi_percent_encoded_path(wsgi_handler: Handler) -> None:
    response = call(wsgi_handler, event_for(path="/files/hello%20world.txt"))

    assert json.loads(response.body) == {"name": "hello world.txt"}


def test_apig_wsgi_binary_response(wsgi_handler: Handler) -> None:
    response = call(wsgi_handler, event_for(path="/logo.png"))

    assert response.status == 200
    assert value(response, "content-type") == "image/png"
    assert response.body == PNG


def test_apig_wsgi_binary_request(wsgi_handler: Handler) -> None:
    data = PNG * 100
    event = event_for(
        "POST", "/digest", headers=[(b"content-type", b"application/octet-stream")], body=data
    )
    response = call(wsgi_handler, event)

    assert response.body == hashlib.sha256(data).digest()


def test_apig_wsgi_text_response(wsgi_handler: Handler) -> None:
    response = call(wsgi_handler, event_for(path="/form"))

    assert value(response, "content-type") == "text/html; charset=utf-8"
    assert response.body == "<h1>café</h1>".encode()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/missing", 404),
        ("GET", "/teapot", 418),
        ("GET", "/nowhere", 404),
        ("DELETE", "/items/1", 405),
    ],
)
def test_apig_wsgi_status_codes(wsgi_handler: Handler, method: str, path: str, status: int) -> None:
    response = call(wsgi_handler, event_for(method, path))

    assert response.status == status
    if status == 418:
        assert json.loads(response.body) == {"short": "stout"}
    else:
        assert value(response, "content-type").startswith("text/html")
