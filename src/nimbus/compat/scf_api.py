"""Tencent SCF's API 3.0 subset that ``tencentcloud-sdk-python-scf`` uses, beside ``/v1``.

Tencent's API 3.0 has one endpoint: every action is a request to ``/`` naming
the action in ``X-TC-Action`` (and ``X-TC-Version: 2018-04-16``), its parameters
a JSON body (``POST``) or a query string (``GET``). An ASGI middleware takes
requests to ``/`` that carry ``X-TC-Action`` and passes the rest on. Each
request:

1. is authenticated with ``TC3-HMAC-SHA256`` (:mod:`nimbus.compat.tc3`) against the
   access keys Nimbus issues with its API keys (SecretId = access key id, SecretKey =
   secret access key, the pair the Lambda API signs with); the claim is checked (time,
   scope, SecretId) before the body is read, the signature after;
2. acts in the namespace its ``Namespace`` parameter names: SCF's ``default`` (also
   what an absent ``Namespace`` means) is the key's own namespace, and ``default`` for
   an admin key; another name must be the key's own namespace (an admin key may name
   any), else the answer is as if nothing were there;
3. is translated onto the services ``/v1`` uses (:mod:`nimbus.compat.scf_ops`);
4. is answered as Tencent answers, with HTTP 200 and ``{"Response": {...,
   "RequestId"}}``, errors as ``{"Response": {"Error": {"Code", "Message"},
   "RequestId"}}``, so the SDK raises ``TencentCloudSDKException`` with that code.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus.compat import tc3
from nimbus.compat.scf_shapes import (
    API_VERSION,
    ScfError,
    envelope,
    error_envelope,
    from_nimbus,
    unflatten,
)
from nimbus.compat.sigv4 import HttpRequest
from nimbus.compat.wire import header_text, read_body
from nimbus.domain.access import Permission, place, require
from nimbus.domain.function import function_not_found
from nimbus.domain.keys import ApiKey, Role
from nimbus.domain.namespace import DEFAULT_NAMESPACE, namespace_not_found
from nimbus.errors import NimbusError

if TYPE_CHECKING:
    from nimbus.app import Platform

log = logging.getLogger("nimbus.compat.scf")

SERVICE = "scf"
#: Body limit of actions without code or event (JSON settings).
SMALL_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class ScfCall:
    """One authenticated SCF API request: its action's parameters, and where it acts."""

    key: ApiKey
    secret_id: str
    region: str
    request_id: str
    action: str
    params: dict[str, Any]
    namespace: str


Handler = Callable[[ScfCall], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Action:
    name: str
    handler: Handler
    permission: Permission
    #: The most body bytes this action reads (from the platform's settings).
    body_limit: Callable[[Platform], int] = lambda _platform: SMALL_BODY_BYTES
    #: Names one function (``FunctionName``): a namespace the key may not see then
    #: answers ``ResourceNotFound.Function``, revealing nothing about the namespace.
    names_function: bool = True


class ScfApi:
    """ASGI middleware serving SCF's API 3.0 at ``/``; everything else goes to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        platform: Platform,
        actions: list[Action],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self._platform = platform
        self._actions = {action.name: action for action in actions}
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("path") == "/"
            and any(name.lower() == b"x-tc-action" for name, _ in scope["headers"])
        ):
            response = await self._handle(scope, receive)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        request_id = str(uuid.uuid4())
        try:
            body = await self._serve(scope, receive, request_id)
            return _json(envelope(request_id, body))
        except tc3.SignatureError as exc:
            return _json(error_envelope(request_id, exc.code, exc.message))
        except ScfError as exc:
            return _json(error_envelope(request_id, exc.code, exc.message))
        except NimbusError as exc:
            error = from_nimbus(exc)
            return _json(error_envelope(request_id, error.code, error.message))
        except ClientDisconnect:
            return _json(error_envelope(request_id, "InvalidParameter", "the client disconnected"))
        except Exception:
            log.exception("unexpected error in the SCF API")
            return _json(
                error_envelope(
                    request_id,
                    "InternalError",
                    "Nimbus hit an internal error; it was logged on the server",
                )
            )

    async def _serve(self, scope: Scope, receive: Receive, request_id: str) -> dict[str, Any]:
        headers = tuple(
            (name.decode("latin-1").lower(), header_text(value)) for name, value in scope["headers"]
        )
        method: str = scope["method"]
        request = HttpRequest(method, b"/", scope.get("query_string", b""), headers)
        if method not in ("GET", "POST"):
            raise ScfError(
                "UnsupportedProtocol", f"API 3.0 takes GET and POST requests, not {method}"
            )
        # 1. What the client claims, refused early when no secret can make it valid.
        claim = tc3.parse(request)
        tc3.check_claims(claim, service=SERVICE, now=self._clock())
        found = await self._platform.keyring.access_key(claim.secret_id)
        if found is None:
            raise tc3.SecretIdNotFoundError(
                f"SecretId {claim.secret_id!r} is not a live Nimbus access key (unknown or "
                "revoked): use the access key id of a key from `nimbus key create`"
            )
        key, secret = found
        # 2. The action, the body (within its limit), then the signature over both.
        action_name = (request.header("x-tc-action") or "").strip()
        action = self._actions.get(action_name)
        limit = action.body_limit(self._platform) if action is not None else SMALL_BODY_BYTES
        body = await _read_body(scope, receive, limit) if method == "POST" else b""
        tc3.verify(request, claim, secret, body)
        version = (request.header("x-tc-version") or "").strip()
        if not version:
            raise ScfError("MissingParameter", f"X-TC-Version is required: {API_VERSION}")
        if version != API_VERSION:
            raise ScfError(
                "NoSuchVersion",
                f"SCF's API version {version!r} is not served here; use {API_VERSION}",
            )
        if action is None:
            raise ScfError(
                "InvalidAction",
                f"Nimbus does not serve the SCF action {action_name!r}; see docs/scf-api.md "
                "for the actions it serves",
            )
        params = _params(request, body)
        # 3. Where it acts, and whether the key may: not found before not allowed, as /v1.
        namespace = self._placed(key, params, action)
        require(key, action.permission)
        call = ScfCall(
            key=key,
            secret_id=claim.secret_id,
            region=(request.header("x-tc-region") or "").strip(),
            request_id=request_id,
            action=action.name,
            params=params,
            namespace=namespace,
        )
        return await action.handler(call)

    def _placed(self, key: ApiKey, params: dict[str, Any], action: Action) -> str:
        requested = params.get("Namespace")
        if requested is not None and not isinstance(requested, str):
            raise ScfError("InvalidParameterValue.Namespace", "Namespace must be a string")
        wanted = None if requested in (None, "", DEFAULT_NAMESPACE) else requested
        placement = place(key, wanted)
        if placement.visible and self._platform.namespaces.exists(placement.namespace):
            return placement.namespace
        function = params.get("FunctionName")
        if action.names_function and isinstance(function, str) and key.role is not Role.ADMIN:
            raise ScfError("ResourceNotFound.Function", function_not_found(function).message)
        raise ScfError(
            "ResourceNotFound.Namespace", namespace_not_found(placement.namespace).message
        )


def _json(data: dict[str, Any]) -> Response:
    # Tencent answers every call with 200; the SDK reads errors from the body (and
    # raises ServerNetworkError on any other status). The SDK only reads bodies whose
    # Content-Type is exactly application/json.
    return Response(
        json.dumps(data, ensure_ascii=False).encode(),
        status_code=200,
        media_type="application/json",
    )


def _params(request: HttpRequest, body: bytes) -> dict[str, Any]:
    """The action's parameters: the JSON body of a POST, the query string of a GET."""
    if request.method == "GET":
        query = request.query.decode("utf-8", "replace")
        return unflatten(parse_qsl(query, keep_blank_values=True))
    content_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise ScfError(
            "InvalidParameter",
            f"POST bodies must be application/json, not {content_type or 'untyped'!r}",
        )
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ScfError("InvalidParameter", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ScfError("InvalidParameter", "the request body must be a JSON object")
    return data


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as it passes ``limit``."""
    return await read_body(
        scope,
        receive,
        limit,
        ScfError(
            "RequestSizeLimitExceeded",
            f"the request must be smaller than {limit} bytes for this action",
        ),
    )
