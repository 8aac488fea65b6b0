"""The synchronous invoke path: ``POST /v1/functions/{name}/invocations``.

Kept apart from the management routes because it is the hot path: the body is
checked as JSON once, handed to the instance as bytes, and the handler's JSON
result is spliced into the response envelope without being re-encoded.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from nimbus.domain.invocation import InvocationResult
from nimbus.errors import InvalidJSONError, PayloadTooLargeError, UnsupportedMediaError

_JSON_TYPES = (b"application/json", b"text/json")


async def read_event(request: Request, limit: int) -> bytes:
    """The request body, checked: JSON, within ``limit`` bytes. Empty means ``{}``."""
    content_type = request.headers.get("content-type", "")
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower().encode()
        if media not in _JSON_TYPES and not media.endswith(b"+json"):
            raise UnsupportedMediaError(
                f"event must be JSON; send Content-Type: application/json (got {content_type!r})"
            )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"event is {declared} bytes; the synchronous limit is {limit} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"event is larger than the synchronous limit of {limit} bytes"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return b"{}"
    try:
        json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidJSONError(f"event is not valid JSON: {exc}; send a JSON document") from exc
    return body


def _json_or_string(payload: bytes) -> bytes:
    """The handler's result as JSON; anything else (a custom runtime's text) as a JSON string."""
    try:
        json.loads(payload)
    except (ValueError, RecursionError):
        return json.dumps(payload.decode("utf-8", "replace")).encode()
    return payload


def render_result(result: InvocationResult) -> Response:
    head: dict[str, Any] = {
        "request_id": result.request_id,
        "function_name": result.function_name,
        "version": result.version,
        "status": result.status.value,
        "cold_start": result.cold_start,
        "duration_ms": round(result.duration_ms, 3),
        "billed_duration_ms": result.billed_duration_ms,
        "init_duration_ms": (
            round(result.init_duration_ms, 3) if result.init_duration_ms is not None else None
        ),
    }
    if result.log_tail is not None:
        head["log_tail"] = result.log_tail
    headers = {
        "X-Nimbus-Request-Id": result.request_id,
        "X-Nimbus-Executed-Version": result.version,
    }
    if result.error is not None:
        head["error"] = result.error.to_dict()
        headers["X-Nimbus-Function-Error"] = "Unhandled"
        body = json.dumps(head).encode()
    else:
        payload = _json_or_string(result.payload or b"null")
        body = json.dumps(head).encode()[:-1] + b',"result":' + payload + b"}"
    return Response(body, media_type="application/json", headers=headers)
