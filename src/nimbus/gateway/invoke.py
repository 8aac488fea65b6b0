"""The synchronous invoke path: ``POST /v1/functions/{name}/invocations``.

Kept apart from the management routes because it is the hot path: the body is
checked as JSON once, handed to the instance as bytes, and the handler's JSON
result is spliced into the response envelope without being re-encoded.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus.domain.access import Permission
from nimbus.domain.function import NAME_RE
from nimbus.domain.invocation import InvocationResult
from nimbus.domain.version import parse_qualifier, split_name
from nimbus.errors import (
    InvalidJSONError,
    InvalidQualifierError,
    NimbusError,
    PayloadTooLargeError,
    UnsupportedMediaError,
    ValidationError,
)

if TYPE_CHECKING:
    from nimbus.app import Platform
    from nimbus.gateway.access import Access

log = logging.getLogger("nimbus.gateway")
_PREFIX, _SUFFIX = "/v1/functions/", "/invocations"
_QUALIFIER_RE = re.compile(r"^(\$LATEST|[1-9][0-9]{0,9}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*)$")

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


class InvokeFastPath:
    """ASGI middleware: ``POST /v1/functions/{name}/invocations`` without FastAPI's
    routing and dependency solving, which cost more than everything else on a warm
    call. Same checks in the same order (401, 404, 403, then the body), same answers;
    anything else, and names the route would refuse, go on to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        platform: Platform,
        access: Access,
        on_error: Callable[[NimbusError], Response],
    ) -> None:
        self.app = app
        self._platform = platform
        self._access = access
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                name, qualifier = split_name(path[len(_PREFIX) : -len(_SUFFIX)])
                if NAME_RE.match(name) and (qualifier is None or _QUALIFIER_RE.match(qualifier)):
                    response = await self._invoke(Request(scope, receive), name, qualifier)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _invoke(self, request: Request, name: str, qualifier: str | None) -> Response:
        try:
            headers = request.headers
            query = request.scope["query_string"]
            requested = asked = None
            if query:
                params = parse_qs(query.decode("latin-1"))
                requested = (params.get("namespace") or [None])[-1]
                asked = (params.get("qualifier") or [None])[-1]
            requested = requested or headers.get("x-nimbus-namespace") or None
            scope = await self._access.function_scope(
                name, Permission.INVOKE, headers.get("authorization"), requested
            )
            return await run_invocation(
                self._platform,
                request,
                scope.namespace,
                name,
                pick_qualifier(qualifier, asked),
                invocation_type=headers.get("x-nimbus-invocation-type"),
                log_type=headers.get("x-nimbus-log-type"),
            )
        except NimbusError as exc:
            return self._on_error(exc)
        except ClientDisconnect:
            return _plain_error(400, "Request.Incomplete", "the client disconnected early")
        except Exception:
            log.exception("unexpected error on the invoke path")
            return _plain_error(
                500,
                "Platform.InternalError",
                "Nimbus hit an internal error; it was logged on the server",
            )


INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


def pick_qualifier(in_path: str | None, in_query: str | None) -> str | None:
    """The qualifier a call names, as ``NAME:QUALIFIER`` or ``?qualifier=`` (not both,
    unless they agree)."""
    if in_path and in_query and in_path != in_query:
        raise InvalidQualifierError(
            f"the path names qualifier {in_path!r} and ?qualifier= names {in_query!r}; "
            "give one of them"
        )
    return in_query or in_path


async def run_invocation(
    platform: Platform,
    request: Request,
    namespace: str,
    name: str,
    qualifier: str | None,
    *,
    invocation_type: str | None,
    log_type: str | None,
) -> Response:
    """One invocation, after the access check: synchronous (RequestResponse, the
    default), asynchronous (Event: stored durably, 202 at once) or a check only (DryRun:
    the function and qualifier exist and the caller may invoke them, 204)."""
    kind = invocation_type or "RequestResponse"
    if kind not in INVOCATION_TYPES:
        raise ValidationError(
            f"X-Nimbus-Invocation-Type must be one of {', '.join(INVOCATION_TYPES)}, got {kind!r}"
        )
    if kind == "Event":
        event = await read_event(request, platform.settings.max_async_payload_bytes)
        stored = await platform.events.submit(namespace, name, event, qualifier)
        return JSONResponse(
            {"request_id": stored.id, "function_name": name, "status": "queued"},
            status_code=202,
            headers={"X-Nimbus-Request-Id": stored.id},
        )
    if kind == "DryRun":
        await platform.directory.resolve(namespace, name, parse_qualifier(qualifier))
        return Response(status_code=204)
    event = await read_event(request, platform.settings.max_sync_payload_bytes)
    result = await platform.dispatcher.invoke(
        namespace,
        name,
        event,
        want_tail=(log_type or "").lower() == "tail",
        qualifier=parse_qualifier(qualifier),
    )
    return render_result(result)


def _plain_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
