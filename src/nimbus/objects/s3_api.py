"""The S3 REST API, path-style, under ``/s3`` on the platform's port.

Two doors lead to the same operations
(:class:`~nimbus.objects.operations.S3Operations`):

- :class:`S3Api`, an ASGI middleware in front of the rest of the platform: every
  path that is ``/s3`` or starts with ``/s3/`` is an S3 request, authenticated
  with AWS Signature V4 (:mod:`nimbus.objects.sigv4s3`) against the access key
  pairs Nimbus issues with its API keys; the key's namespace and role decide what
  it may touch (admin keys may name a namespace with ``X-Nimbus-Namespace``, as
  on the Lambda API);
- :class:`InstanceS3App`, served on an instance's own Runtime API socket
  (:mod:`nimbus.runtime_api.storage`): the socket says which instance calls, so
  there is no signature; the instance acts in its function's namespace,
  read-write, and its writes carry the invocation it runs (for loop detection).

Paths: ``/s3`` (ListBuckets), ``/s3/{bucket}`` and ``/s3/{bucket}/{key}``, the key
percent-decoded from the raw path (``/`` and every other byte kept). Answers are
S3's: XML bodies, ``ETag`` and ``x-amz-*`` headers, and errors as
``<Error><Code>...`` with S3's codes, so botocore raises the ``ClientError`` it
would raise against S3. Bodies stream both ways (see docs/object-storage.md for
what is served and what is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus.compat import sigv4
from nimbus.domain.access import Permission, allows, place
from nimbus.domain.keys import Role
from nimbus.objects import xml
from nimbus.objects.errors import S3Error, access_denied
from nimbus.objects.operations import (
    PREFIX,
    Answer,
    S3Operations,
    S3Request,
    TrackedReceive,
    header,
    new_request_id,
)
from nimbus.objects.service import Caller
from nimbus.objects.sigv4s3 import (
    SERVICE,
    PayloadRule,
    is_presigned_v2,
    s3_error,
    verify,
    verify_presigned_v2,
)

if TYPE_CHECKING:
    from nimbus.app import Platform

log = logging.getLogger("nimbus.objects.s3")


async def send_answer(send: Send, answer: Answer, request: S3Request | None, *, head: bool) -> None:
    headers = list(answer.headers)
    if request is not None:
        headers += [
            header("x-amz-request-id", request.request_id),
            header("x-amz-id-2", request.request_id),
        ]
        if request.body_left_unread:
            headers.append(header("connection", "close"))
    body = answer.body
    if isinstance(body, bytes):
        if not any(name == b"content-length" for name, _ in headers):
            headers.append(header("content-length", len(body)))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})
        return
    # A client that goes away mid-download stops the reading (the server's send would
    # go on quietly discarding the pieces).
    gone = asyncio.Event()

    async def watch(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch(request.receive)) if request is not None else None
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    try:
        async for piece in body:
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        if watcher is not None:
            watcher.cancel()
        with contextlib.suppress(Exception):
            await body.aclose()  # type: ignore[attr-defined]


def error_answer(err: S3Error, request_id: str, resource: str) -> Answer:
    if err.resource is None:
        err.resource = resource
    headers = [header(k, v) for k, v in err.headers.items()]
    if err.status == 304:
        return Answer(304, headers)
    return Answer(
        err.status, [(b"content-type", b"application/xml"), *headers], xml.error(err, request_id)
    )


def parse_path(raw_path: bytes) -> tuple[str | None, str | None]:
    """(bucket, key) of a raw path below the prefix; the key percent-decoded."""
    rest = raw_path[len(PREFIX.encode()) :].lstrip(b"/")
    if not rest:
        return None, None
    bucket_raw, slash, key_raw = rest.partition(b"/")
    bucket = unquote_to_bytes(bucket_raw).decode("utf-8", "replace")
    if not slash or not key_raw:
        return bucket, None
    try:
        key = unquote_to_bytes(key_raw).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", "object keys must be UTF-8") from None
    return bucket, key


def unverified_rule(content_sha256: str | None) -> PayloadRule:
    """How to read a body whose signature is not checked (an instance's socket): its
    ``x-amz-content-sha256`` still says whether it is ``aws-chunked``, or its hash."""
    if content_sha256 and content_sha256.startswith("STREAMING-"):
        return PayloadRule(chunked=True)
    if content_sha256 and len(content_sha256) == 64:
        return PayloadRule(sha256=content_sha256.lower())
    return PayloadRule()


# ---- the doors -------------------------------------------------------------------------------


def _scope_request(scope: Scope, receive: Receive, rule: PayloadRule) -> S3Request:
    raw_path: bytes = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
    bucket, key = parse_path(raw_path)
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    query = sigv4.query_params(scope.get("query_string", b""))
    return S3Request(
        scope["method"],
        bucket,
        key,
        query,
        headers,
        new_request_id(),
        TrackedReceive(receive),
        rule,
    )


async def _serve(
    ops: S3Operations,
    scope: Scope,
    receive: Receive,
    send: Send,
    authenticate: Callable[[Scope, S3Request], Awaitable[tuple[Caller, PayloadRule]]],
) -> None:
    head = scope["method"] == "HEAD"
    request = _scope_request(scope, receive, PayloadRule())
    try:
        caller, rule = await authenticate(scope, request)
        request.rule = rule
        answer = await ops.dispatch(request, caller)
    except S3Error as exc:
        answer = error_answer(exc, request.request_id, request.resource)
    except Exception:
        log.exception("unexpected error in the S3 API")
        answer = error_answer(
            S3Error("InternalError", "Nimbus hit an internal error; it was logged on the server"),
            request.request_id,
            request.resource,
        )
    await send_answer(send, answer, request, head=head)


class S3Api:
    """ASGI middleware: ``/s3`` and ``/s3/...`` are the S3 API; the rest goes to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        platform: Platform,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self._platform = platform
        self._clock = clock
        self.ops = S3Operations(platform.objects, platform.settings.base_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(PREFIX) and (len(path) == 3 or path[3] == "/"):
                await _serve(self.ops, scope, receive, send, self._authenticate)
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, request: S3Request) -> tuple[Caller, PayloadRule]:
        raw_path: bytes = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
        http = sigv4.HttpRequest(
            scope["method"],
            raw_path,
            scope.get("query_string", b""),
            tuple(
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in scope["headers"]
            ),
        )
        keyring = self._platform.keyring
        params = request.query
        if "authorization" not in request.headers and is_presigned_v2(params):
            found = await keyring.access_key(params["AWSAccessKeyId"])
            if found is None:
                raise s3_error(sigv4.UnrecognizedClientError("unknown access key"))
            key, secret = found
            verify_presigned_v2(http, secret, self._clock(), mount=PREFIX)
            access_key_id = params["AWSAccessKeyId"]
            rule = PayloadRule()
        else:
            try:
                claim = sigv4.parse(http)
                sigv4.check_claims(claim, service=SERVICE, now=self._clock())
            except sigv4.SignatureError as exc:
                raise s3_error(exc) from None
            found = await keyring.access_key(claim.access_key_id)
            if found is None:
                raise s3_error(sigv4.UnrecognizedClientError("unknown access key"))
            key, secret = found
            rule = verify(http, claim, secret)
            access_key_id = claim.access_key_id
        placement = place(key, request.headers.get("x-nimbus-namespace") or None)
        if not placement.visible or not self._platform.namespaces.exists(placement.namespace):
            raise access_denied(
                f"Access Denied: namespace {placement.namespace!r} does not exist or is not "
                "this key's"
            )
        client = scope.get("client") or ("127.0.0.1", 0)
        caller = Caller(
            namespace=placement.namespace,
            writes=allows(key.role, Permission.MANAGE),
            every_namespace=key.role is Role.ADMIN,
            principal=f"AWS:{access_key_id}",
            source_ip=str(client[0]),
            request_id=request.request_id,
        )
        return caller, rule


#: The key under which the runtime socket's server puts the caller factory in scope state.
CALLER_STATE = "nimbus.storage_caller"


class InstanceS3App:
    """The S3 operations for an instance's Runtime API socket; the caller comes from the
    socket (``scope["state"][CALLER_STATE]``, a function of the request id)."""

    def __init__(self, ops: S3Operations) -> None:
        self.ops = ops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if not (path.startswith(PREFIX) and (len(path) == 3 or path[3] == "/")):
            await send_answer(
                send,
                error_answer(
                    S3Error("InvalidRequest", f"storage paths start with {PREFIX}/"),
                    new_request_id(),
                    path,
                ),
                None,
                head=scope["method"] == "HEAD",
            )
            return
        await _serve(self.ops, scope, receive, send, self._authenticate)

    async def _authenticate(self, scope: Scope, request: S3Request) -> tuple[Caller, PayloadRule]:
        make: Callable[[str], Caller] = scope["state"][CALLER_STATE]
        return make(request.request_id), unverified_rule(request.header("x-amz-content-sha256"))
