"""The AWS Lambda REST API subset boto3 and the AWS CLI use, beside ``/v1`` on one port.

An ASGI middleware takes every path that starts with an API date
(``/2015-03-31/...``, ``/2017-10-31/...``, ``/2019-09-30/...``) and passes the
rest on to the ``/v1`` app. Each request:

1. is authenticated with AWS Signature V4 (:mod:`nimbus.compat.sigv4`) against
   the access keys Nimbus issues with its API keys; the claim is checked (time,
   scope, access key id) before the body is read, the signature after;
2. acts in the key's namespace (an admin key may name another with
   ``X-Nimbus-Namespace``, as on ``/v1``), with the permission its operation needs;
3. is translated onto the services ``/v1`` uses (``platform.functions``,
   ``platform.versions``, ``platform.dispatcher``, ``platform.events``);
4. is answered in botocore's shapes, errors with ``x-amzn-ErrorType``
   (:mod:`nimbus.compat.shapes`).

Operations are in :mod:`nimbus.compat.lambda_ops`; this module is the door.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus.compat import sigv4
from nimbus.compat.shapes import (
    FunctionRef,
    LambdaError,
    account_id,
    from_nimbus,
    invalid_parameter,
    parse_function_name,
    service_error,
)
from nimbus.compat.wire import header_text, read_body
from nimbus.domain.access import Permission, place, require
from nimbus.domain.function import function_not_found
from nimbus.domain.keys import ApiKey, Role
from nimbus.domain.namespace import namespace_not_found
from nimbus.errors import NimbusError

if TYPE_CHECKING:
    from nimbus.app import Platform

log = logging.getLogger("nimbus.compat.lambda")

#: Paths of the Lambda API: its operations live under the date of their API version.
API_PATH = re.compile(r"^/20[0-9]{2}-[0-9]{2}-[0-9]{2}(/|$)")
SERVICE = "lambda"
#: Body limit of operations without code or payload (JSON settings).
SMALL_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Call:
    """One authenticated Lambda API request, its body read and its signature verified."""

    key: ApiKey
    access_key_id: str
    secret: str = field(repr=False)  # the access key's, to presign URLs for this caller
    region: str
    request_id: str
    method: str
    scheme: str
    host: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    #: The namespace the call acts in, and the ``FunctionName`` of the path, parsed.
    namespace: str = ""
    function: FunctionRef | None = None

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            raise invalid_parameter(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise invalid_parameter("the request body must be a JSON object")
        return data

    @property
    def function_name(self) -> str:
        assert self.function is not None
        return self.function.name


Handler = Callable[[Call, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    #: Path segments; ``{name}`` matches any one segment.
    pattern: tuple[str, ...]
    handler: Handler
    permission: Permission
    #: The most body bytes this operation reads (from the platform's settings).
    body_limit: Callable[[Platform], int] = lambda _platform: SMALL_BODY_BYTES

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        if method != self.method or len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def json_response(
    call: Call,
    data: dict[str, Any] | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        json.dumps(data).encode() if data is not None else b"",
        status_code=status,
        media_type="application/json" if data is not None else None,
        headers={"x-amzn-RequestId": call.request_id, **(headers or {})},
    )


def error_response(error: LambdaError | sigv4.SignatureError, request_id: str) -> Response:
    if isinstance(error, sigv4.SignatureError):
        error = LambdaError(error.aws_type, 403, error.message)
    return Response(
        json.dumps(error.body()).encode(),
        status_code=error.status,
        media_type="application/json",
        headers={
            "x-amzn-ErrorType": error.aws_type,
            "x-amzn-RequestId": request_id,
            **error.headers,
        },
    )


class LambdaApi:
    """ASGI middleware serving the Lambda API's paths; everything else goes to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        platform: Platform,
        routes: list[Route],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self._platform = platform
        self._routes = routes
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/20") and API_PATH.match(path):
            response = await self._handle(scope, receive)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        request_id = str(uuid.uuid4())
        try:
            return await self._serve(scope, receive, request_id)
        except sigv4.SignatureError as exc:
            return error_response(exc, request_id)
        except LambdaError as exc:
            return error_response(exc, request_id)
        except NimbusError as exc:
            return error_response(from_nimbus(exc), request_id)
        except ClientDisconnect:
            return error_response(
                LambdaError("InvalidRequestContentException", 400, "the client disconnected"),
                request_id,
            )
        except Exception:
            log.exception("unexpected error in the Lambda API")
            return error_response(
                service_error("Nimbus hit an internal error; it was logged on the server"),
                request_id,
            )

    async def _serve(self, scope: Scope, receive: Receive, request_id: str) -> Response:
        headers = tuple(
            (name.decode("latin-1").lower(), header_text(value)) for name, value in scope["headers"]
        )
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        request = sigv4.HttpRequest(
            scope["method"], raw_path.split(b"?", 1)[0], scope.get("query_string", b""), headers
        )
        # 1. What the client claims, refused early when no secret can make it valid.
        claim = sigv4.parse(request)
        sigv4.check_claims(claim, service=SERVICE, now=self._clock())
        found = await self._platform.keyring.access_key(claim.access_key_id)
        if found is None:
            raise sigv4.UnrecognizedClientError(
                "The security token included in the request is invalid."
            )
        key, secret = found
        # 2. The operation, the body (within its limit), then the signature over both.
        segments = [s.decode("utf-8", "replace") for s in sigv4.path_segments(request.raw_path)]
        route, params = self._route(request.method, segments)
        limit = route.body_limit(self._platform) if route is not None else SMALL_BODY_BYTES
        body = await _read_body(scope, receive, limit)
        sigv4.verify(request, claim, secret, body)
        if route is None:
            raise LambdaError(
                "UnknownOperationException",
                404,
                f"Nimbus does not implement {request.method} /{'/'.join(segments)} of the "
                "Lambda API; see docs/lambda-api.md for the operations it serves",
            )
        header_map: dict[str, str] = {}
        for name, value in headers:
            header_map.setdefault(name, value)
        call = Call(
            key=key,
            access_key_id=claim.access_key_id,
            secret=secret,
            region=claim.region,
            request_id=request_id,
            method=request.method,
            scheme=scope.get("scheme", "http"),
            host=header_map.get("host", ""),
            query=sigv4.query_params(request.query),
            headers=header_map,
            body=body,
        )
        # 3. Where it acts, and whether the key may: 404 before 403, as on /v1.
        call = self._placed(call, params.get("function"))
        require(key, route.permission)
        return await route.handler(call, params)

    def _route(self, method: str, segments: list[str]) -> tuple[Route | None, dict[str, str]]:
        for route in self._routes:
            params = route.match(method, segments)
            if params is not None:
                return route, params
        return None, {}

    def _placed(self, call: Call, function: str | None) -> Call:
        requested = call.headers.get("x-nimbus-namespace") or None
        placement = place(call.key, requested)
        visible = placement.visible and self._platform.namespaces.exists(placement.namespace)
        ref = parse_function_name(function) if function is not None else None
        if ref is not None and ref.account not in (None, account_id(placement.namespace)):
            visible = False  # an ARN of another account (namespace): nothing there
        if not visible:
            if ref is not None and call.key.role is not Role.ADMIN:
                raise LambdaError(
                    "ResourceNotFoundException", 404, function_not_found(ref.name).message
                )
            raise LambdaError(
                "ResourceNotFoundException", 404, namespace_not_found(placement.namespace).message
            )
        return dataclasses.replace(call, namespace=placement.namespace, function=ref)


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit``."""
    return await read_body(
        scope,
        receive,
        limit,
        LambdaError(
            "RequestTooLargeException",
            413,
            f"Request must be smaller than {limit} bytes for this operation",
        ),
    )
