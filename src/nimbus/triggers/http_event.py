"""HTTP function events: a request becomes a payload 2.0 event, a result becomes a response.

This is the pure mapping behind function URLs (``/fn/{namespace}/{name}[:qualifier]/{path}``).
It follows the event of AWS Lambda function URLs and API Gateway HTTP APIs, payload
format 2.0, so handlers wrapped by Mangum (ASGI) or apig-wsgi (WSGI) run unmodified:

- :func:`build_event` turns the parts of a request (:class:`HttpRequest`) into the event::

    {"version": "2.0", "routeKey": "$default", "rawPath": "/a/b", "rawQueryString": "x=1",
     "cookies": ["s=1"], "headers": {"host": "..."}, "queryStringParameters": {"x": "1"},
     "requestContext": {..., "http": {"method", "path", "protocol", "sourceIp", "userAgent"},
                        "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390},
     "body": "...", "isBase64Encoded": false}

  Header names are lower-cased and repeated headers joined with ``,``; ``Cookie``
  headers go to ``cookies`` instead. Repeated query keys are joined with ``,``.
  The body is text when the content type is textual and the bytes are UTF-8, else
  base64. ``cookies``, ``queryStringParameters`` and ``body`` are left out when empty.

- :func:`parse_response` turns what the function returned into an :class:`HttpResponse`.
  A JSON object with ``statusCode`` is a response (``headers``, ``multiValueHeaders``,
  ``cookies`` as ``set-cookie``, ``body``, ``isBase64Encoded``; content type defaults
  to ``application/json``); any other JSON value is a 200 ``application/json`` whose
  body is that JSON as returned; bytes that are not JSON (custom runtimes) are a 200
  ``text/plain``. A malformed response is a 502 ``Function.InvalidResponse`` whose
  message says what is wrong.

Nothing here does I/O or imports a web framework; the time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import unquote_plus

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_ROUTE_KEY",
    "DEFAULT_STAGE",
    "INVALID_RESPONSE_CODE",
    "HttpRequest",
    "HttpResponse",
    "build_event",
    "format_request_time",
    "is_textual_content_type",
    "parse_response",
]

DEFAULT_ACCOUNT_ID = "000000000000"
DEFAULT_STAGE = "$default"
DEFAULT_ROUTE_KEY = "$default"
INVALID_RESPONSE_CODE = "Function.InvalidResponse"

_T = TypeVar("_T")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEXTUAL_MARKERS = ("json", "xml", "javascript", "form-urlencoded")
# RFC 9110 field-name: a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")
# Framing is the server's job: it sets these from the body it actually sends.
_FRAMING_HEADERS = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request to a function URL, in the shapes an ASGI server hands over."""

    method: str
    #: The path after the function's prefix, still percent-encoded ("" means "/").
    raw_path: str
    #: The query string without "?", as received (ASGI ``scope["query_string"]``).
    raw_query: bytes
    #: Header pairs as ASGI gives them, repeats and order kept.
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes
    #: Address of the immediate client (ASGI ``scope["client"][0]``).
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What to send back to the HTTP client; framing headers are left to the server."""

    status: int
    #: Lower-cased names; a name may repeat (``set-cookie``).
    headers: list[tuple[bytes, bytes]]
    body: bytes


# -- request → event ------------------------------------------------------------------


def build_event(
    request: HttpRequest,
    *,
    request_id: str,
    now: datetime,
    domain_name: str,
    account_id: str = DEFAULT_ACCOUNT_ID,
    api_id: str | None = None,
    stage: str = DEFAULT_STAGE,
    route_key: str = DEFAULT_ROUTE_KEY,
) -> dict[str, Any]:
    """The payload 2.0 event for ``request``, received at ``now`` (timezone-aware).

    ``domain_name`` is the host the client addressed; its first label is the
    ``domainPrefix`` and, unless ``api_id`` is given, the ``apiId`` (as for a
    function URL, whose ``apiId`` is its URL id).
    """
    headers, cookies = _event_headers(request.headers)
    raw_path = request.raw_path if request.raw_path.startswith("/") else "/" + request.raw_path
    raw_query = _text(request.raw_query)
    prefix = _domain_prefix(domain_name)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = _query_parameters(raw_query)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id if api_id is not None else prefix,
        "domainName": domain_name,
        "domainPrefix": prefix,
        "http": {
            "method": request.method.upper(),
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": format_request_time(now),
        "timeEpoch": _epoch_ms(now),
    }
    body, is_base64 = _event_body(request.body, headers.get("content-type"))
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = is_base64
    return event


def format_request_time(now: datetime) -> str:
    """``requestContext.time``: ``12/Mar/2020:19:03:58 +0000``, in UTC, locale-independent."""
    t = _utc(now)
    month = _MONTHS[t.month - 1]
    return f"{t.day:02d}/{month}/{t.year:04d}:{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000"


def is_textual_content_type(content_type: str | None) -> bool:
    """Whether a body of this type travels as text: text/*, JSON, XML, forms, JavaScript."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or any(m in media_type for m in _TEXTUAL_MARKERS)


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _epoch_ms(now: datetime) -> int:
    return (_utc(now) - _EPOCH) // timedelta(milliseconds=1)


def _text(raw: bytes) -> str:
    """Request bytes as text: UTF-8 when they are, else Latin-1 (lossless, ASGI's default)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _event_headers(raw: Sequence[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in raw:
        name = _text(raw_name).lower()
        value = _text(raw_value)
        if name == "cookie":
            cookies.extend(c for c in (part.strip() for part in value.split(";")) if c)
        elif name in headers:
            headers[name] = f"{headers[name]},{value}"
        else:
            headers[name] = value
    return headers, cookies


def _query_parameters(raw_query: str) -> dict[str, str]:
    """Form-decoded parameters (``+`` is a space); repeated keys joined with ``,``."""
    params: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key, value = unquote_plus(raw_key), unquote_plus(raw_value)
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def _event_body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    if not body:
        return None, False
    if is_textual_content_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _domain_prefix(domain_name: str) -> str:
    host = domain_name.strip()
    if host.startswith("["):  # [IPv6]:port
        return host[: host.find("]") + 1] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".", 1)[0]
    return host


# -- result → response ----------------------------------------------------------------


class _InvalidResponse(Exception):
    """The function's result claims to be a response but is malformed."""


def parse_response(payload: bytes) -> HttpResponse:
    """The HTTP response for what an HTTP function returned (its raw result bytes)."""
    try:
        result = json.loads(payload, parse_constant=_reject_constant)
    except RecursionError:
        return _invalid_response("the result is JSON nested too deeply to read")
    except ValueError:  # not JSON: invalid, not Unicode, or NaN/Infinity
        return HttpResponse(200, [(b"content-type", _plain_text_type(payload))], payload)
    if not isinstance(result, dict) or "statusCode" not in result:
        return HttpResponse(200, [(b"content-type", b"application/json")], payload)
    try:
        return _structured_response(result)
    except _InvalidResponse as exc:
        return _invalid_response(str(exc))


def _plain_text_type(payload: bytes) -> bytes:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return b"text/plain"
    return b"text/plain; charset=utf-8"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _structured_response(result: Mapping[str, Any]) -> HttpResponse:
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _InvalidResponse(
            f"statusCode must be an integer from 100 to 599, got {_show(status)}"
        )

    pairs: list[tuple[str, str]] = []
    single = _optional(result, "headers", dict, "an object of strings")
    multi = _optional(result, "multiValueHeaders", dict, "an object of string arrays")
    multi_names = {name.lower() for name in multi or {}}
    for name, value in (single or {}).items():
        if not isinstance(value, str):
            raise _InvalidResponse(f"headers[{name!r}] must be a string, got {_show(value)}")
        # As in API Gateway, a name in multiValueHeaders takes its values from there.
        if name.lower() not in multi_names:
            pairs.append((name, value))
    for name, values in (multi or {}).items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _InvalidResponse(
                f"multiValueHeaders[{name!r}] must be an array of strings, got {_show(values)}"
            )
        pairs.extend((name, value) for value in values)
    cookies = _optional(result, "cookies", list, "an array of strings")
    for cookie in cookies or []:
        if not isinstance(cookie, str):
            raise _InvalidResponse(f"cookies must be an array of strings, got {_show(cookie)}")
        pairs.append(("set-cookie", cookie))

    headers = [_header(name, value) for name, value in pairs]
    headers = [h for h in headers if h[0] not in _FRAMING_HEADERS]
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"application/json"))
    return HttpResponse(status, headers, _response_body(result))


def _optional(result: Mapping[str, Any], key: str, kind: type[_T], shape: str) -> _T | None:
    """``result[key]`` when present and not null, checked to be a ``kind``."""
    value = result.get(key)
    if value is not None and not isinstance(value, kind):
        raise _InvalidResponse(f"{key} must be {shape}, got {_show(value)}")
    return value


def _response_body(result: Mapping[str, Any]) -> bytes:
    body = _optional(result, "body", str, "a string")
    is_base64 = _optional(result, "isBase64Encoded", bool, "true or false")
    if not body:
        return b""
    if is_base64:
        try:
            return base64.b64decode(re.sub(r"\s+", "", body), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _InvalidResponse("isBase64Encoded is true but body is not valid base64") from exc
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _InvalidResponse(f"body is not valid Unicode text: {exc.reason}") from exc


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    if not _HEADER_NAME.fullmatch(name):
        raise _InvalidResponse(f"header name {name!r} is not a valid HTTP field name")
    if _FORBIDDEN_IN_VALUE.search(value):
        raise _InvalidResponse(f"header {name!r} has a line break or NUL in its value")
    try:
        encoded = value.encode("latin-1")
    except UnicodeEncodeError:
        encoded = value.encode("utf-8", errors="replace")
    return name.lower().encode("ascii"), encoded


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _invalid_response(problem: str) -> HttpResponse:
    message = f"The function returned a malformed HTTP response: {problem}."
    body = json.dumps({"error": {"code": INVALID_RESPONSE_CODE, "message": message}})
    return HttpResponse(502, [(b"content-type", b"application/json")], body.encode("utf-8"))
