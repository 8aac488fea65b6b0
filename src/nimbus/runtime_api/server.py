"""The Runtime API: the only way an instance gets work.

Each instance gets its own endpoint: a unix socket (and, for runtimes that only
speak TCP, a loopback port), so the endpoint itself says which instance is
calling and no instance can answer for another. Both Lambda's paths and
Tencent SCF's Custom Runtime paths are served:

    GET  /2018-06-01/runtime/invocation/next        → 200 event, Lambda-Runtime-* headers
    POST /2018-06-01/runtime/invocation/{id}/response → 202
    POST /2018-06-01/runtime/invocation/{id}/error    → 202
    POST /2018-06-01/runtime/init/error               → 202
    POST /runtime/init/ready                          → 200 (SCF)
    GET  /runtime/invocation/next                     → 200 event, SCF headers
    POST /runtime/invocation/response                 → 200 (SCF)
    POST /runtime/invocation/error                    → 200 (SCF)
    GET  /2018-06-01/runtime/invocation/{id}/stream   → 101, then ASGI frames (HTTP services)

The last one is Nimbus's own: an HTTP service instance upgrades a second
connection (``Connection: Upgrade``, ``Upgrade: nimbus-asgi``) into the framed
ASGI channel of the request in flight (see :mod:`nimbus.runtime_api.channel`);
whoever called :meth:`RuntimeEndpoint.expect_stream` for that request gets it.

HTTP/1.1 is parsed with httptools; the semantics live in a
:class:`RuntimeHandler` (the pool's instance object), so this module only
speaks the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from nimbus.runtime_api.channel import UPGRADE_TOKEN, Channel

if TYPE_CHECKING:
    from nimbus.runtime_api.storage import InstanceStorage

log = logging.getLogger("nimbus.runtime_api")

LAMBDA_PREFIX = b"/2018-06-01/runtime/"
SCF_PREFIX = b"/runtime/"
_REASONS = {
    200: b"OK",
    101: b"Switching Protocols",
    202: b"Accepted",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    410: b"Gone",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
}


@dataclass(frozen=True)
class NextEvent:
    """One invocation handed to a runtime."""

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    #: Extra headers for SCF runtimes (function name, memory, time limit...).
    scf_headers: tuple[tuple[bytes, bytes], ...] = ()


class RuntimeHandler(Protocol):
    """What the endpoint calls; the instance object implements it."""

    def next_invocation(self) -> Awaitable[NextEvent]:
        """Resolve with the next event for this instance (long poll)."""

    def on_response(self, request_id: str | None, body: bytes) -> bool:
        """A result for ``request_id`` (None: the one in flight). False if unknown."""

    def on_error(self, request_id: str | None, body: bytes, error_type: str | None) -> bool:
        """An error for ``request_id`` (None: the one in flight). False if unknown."""

    def on_init_error(self, body: bytes, error_type: str | None) -> None:
        """The runtime could not initialise."""

    def on_init_ready(self) -> None:
        """The runtime finished initialising (SCF's explicit signal)."""


def _response(
    status: int,
    body: bytes = b"",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    content_type: bytes = b"application/json",
) -> bytes:
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
        b"Content-Type: " + content_type + b"\r\n",
        b"Content-Length: %d\r\n" % len(body),
    ]
    head.extend(name + b": " + value + b"\r\n" for name, value in headers)
    head.append(b"\r\n")
    return b"".join(head) + body


_ACCEPTED = _response(202, b'{"status":"OK"}')
_SCF_OK = _response(200, b'{"status":"OK"}')


def _error(status: int, error_type: str, message: str) -> bytes:
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return _response(status, body)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection from a runtime. Requests are answered in order."""

    def __init__(self, endpoint: RuntimeEndpoint) -> None:
        self._endpoint = endpoint
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: list[tuple[bytes, bytes, dict[bytes, bytes], bytes, bool]] = []
        self._busy = False
        self._pending: asyncio.Task[None] | None = None
        #: Set once the connection is upgraded into an HTTP service's ASGI channel.
        self._channel: Channel | None = None
        self._first_bytes = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._endpoint.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._endpoint.connections.discard(self)
        if self._pending is not None:
            self._pending.cancel()
        if self._channel is not None:
            self._channel.feed_eof()

    def data_received(self, data: bytes) -> None:
        if self._channel is not None:
            self._channel.feed(data)
            return
        if self._first_bytes:
            self._first_bytes = False
            # A connection whose first request is for object storage goes to the storage
            # server (runtime_api/storage.py); looked at once per connection.
            storage = self._endpoint.storage
            if storage is not None and storage.claim(self._transport, data):
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self._channel is not None:  # bytes after the upgrade request are frames
                self._channel.feed(data[int(exc.args[0]) :])
            elif self._transport is not None:
                self._transport.close()  # an upgrade to anything else: refused already
        except httptools.HttpParserError:
            self._write(_error(400, "InvalidRequest", "malformed HTTP request"), keep_alive=False)

    def pause_writing(self) -> None:
        if self._channel is not None:
            self._channel.pause_writing()

    def resume_writing(self) -> None:
        if self._channel is not None:
            self._channel.resume_writing()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        # curl (shell bootstraps, libcurl runtimes) sends "Expect: 100-continue" before
        # bodies over 1 MB and waits a second for this answer before sending anyway.
        if (
            self._headers.get(b"expect", b"").lower() == b"100-continue"
            and not self._busy
            and self._transport is not None
        ):
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size <= self._endpoint.max_body_bytes:
            self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        body = b"".join(self._body)
        if self._body_size > self._endpoint.max_body_bytes:
            body = b"\x00TOO_LARGE"
        request = (method, self._url, self._headers, body, self._parser.should_keep_alive())
        if self._busy:
            self._queue.append(request)
        else:
            self._handle(*request)

    # request handling
    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(data)
        if not keep_alive:
            self._transport.close()

    def _done(self) -> None:
        self._busy = False
        self._pending = None
        if self._queue:
            self._handle(*self._queue.pop(0))

    def _handle(
        self, method: bytes, url: bytes, headers: dict[bytes, bytes], body: bytes, keep_alive: bool
    ) -> None:
        path = url.split(b"?", 1)[0]
        handler = self._endpoint.handler
        if body == b"\x00TOO_LARGE":
            limit = self._endpoint.max_body_bytes
            message = f"the response is larger than the limit of {limit} bytes"
            handler.on_error(
                None,
                json.dumps(
                    {"errorType": "Function.ResponseSizeTooLarge", "errorMessage": message}
                ).encode(),
                "Function.ResponseSizeTooLarge",
            )
            self._write(_error(413, "RequestEntityTooLarge", message), keep_alive)
            return
        if path.startswith(LAMBDA_PREFIX):
            rest = path[len(LAMBDA_PREFIX) :]
            if rest == b"invocation/next" and method == b"GET":
                self._start_next(lambda ev: _lambda_next(ev), keep_alive)
                return
            if method == b"GET" and rest.endswith(b"/stream") and rest.startswith(b"invocation/"):
                rid = rest[len(b"invocation/") : -len(b"/stream")].decode("utf-8", "replace")
                self._upgrade(rid, headers)
                return
            if rest.startswith(b"invocation/") and method == b"POST":
                request_id, _, kind = rest[len(b"invocation/") :].rpartition(b"/")
                rid = request_id.decode("utf-8", "replace")
                error_type = headers.get(b"lambda-runtime-function-error-type")
                et = error_type.decode("utf-8", "replace") if error_type else None
                if kind == b"response":
                    ok = handler.on_response(rid, body)
                elif kind == b"error":
                    ok = handler.on_error(rid, body, et)
                else:
                    self._write(_error(404, "NotFound", "unknown path"), keep_alive)
                    return
                self._write(
                    _ACCEPTED
                    if ok
                    else _error(400, "InvalidRequestID", f"no invocation {rid} is in flight"),
                    keep_alive,
                )
                return
            if rest == b"init/error" and method == b"POST":
                et_raw = headers.get(b"lambda-runtime-function-error-type")
                handler.on_init_error(body, et_raw.decode("utf-8", "replace") if et_raw else None)
                self._write(_ACCEPTED, keep_alive)
                return
        elif path.startswith(SCF_PREFIX):
            rest = path[len(SCF_PREFIX) :]
            if rest == b"invocation/next" and method == b"GET":
                self._start_next(lambda ev: _scf_next(ev), keep_alive)
                return
            if method == b"POST":
                if rest == b"init/ready":
                    handler.on_init_ready()
                    self._write(_SCF_OK, keep_alive)
                    return
                if rest == b"invocation/response":
                    ok = handler.on_response(None, body)
                elif rest == b"invocation/error":
                    ok = handler.on_error(None, body, None)
                else:
                    self._write(_error(404, "NotFound", "unknown path"), keep_alive)
                    return
                self._write(
                    _SCF_OK
                    if ok
                    else _error(400, "InvalidRequestID", "no invocation is in flight"),
                    keep_alive,
                )
                return
        self._write(
            _error(404, "NotFound", f"unknown Runtime API path {path.decode(errors='replace')}"),
            keep_alive,
        )

    def _upgrade(self, request_id: str, headers: dict[bytes, bytes]) -> None:
        """Turn this connection into the ASGI channel of ``request_id``."""
        tokens = [t.strip().lower() for t in headers.get(b"connection", b"").split(b",")]
        if b"upgrade" not in tokens or headers.get(b"upgrade", b"").lower() != UPGRADE_TOKEN:
            self._write(
                _error(400, "InvalidRequest", "send Connection: Upgrade, Upgrade: nimbus-asgi"),
                keep_alive=False,
            )
            return
        waiter = self._endpoint.take_stream_waiter(request_id)
        if waiter is None or self._transport is None:
            message = f"no HTTP service request {request_id} is waiting for its stream"
            self._write(_error(400, "InvalidRequestID", message), keep_alive=False)
            return
        self._transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Upgrade: " + UPGRADE_TOKEN + b"\r\n\r\n"
        )
        self._channel = Channel(self._transport)
        waiter.set_result(self._channel)

    def _start_next(self, render: Callable[[NextEvent], bytes], keep_alive: bool) -> None:
        self._busy = True
        self._pending = asyncio.ensure_future(self._serve_next(render, keep_alive))

    async def _serve_next(self, render: Callable[[NextEvent], bytes], keep_alive: bool) -> None:
        try:
            event = await self._endpoint.handler.next_invocation()
        except asyncio.CancelledError:
            return
        self._write(render(event), keep_alive)
        self._done()


def _lambda_next(ev: NextEvent) -> bytes:
    return _response(
        200,
        ev.payload,
        (
            (b"Lambda-Runtime-Aws-Request-Id", ev.request_id.encode()),
            (b"Lambda-Runtime-Deadline-Ms", str(ev.deadline_ms).encode()),
            (b"Lambda-Runtime-Invoked-Function-Arn", ev.function_arn.encode()),
            (b"Lambda-Runtime-Trace-Id", ev.trace_id.encode()),
        ),
    )


def _scf_next(ev: NextEvent) -> bytes:
    return _response(
        200,
        ev.payload,
        (
            (b"Request_Id", ev.request_id.encode()),
            (b"Deadline_Ms", str(ev.deadline_ms).encode()),
            *ev.scf_headers,
        ),
    )


class RuntimeEndpoint:
    """The Runtime API of one instance, on a unix socket and optionally loopback TCP."""

    def __init__(
        self,
        handler: RuntimeHandler,
        max_body_bytes: int,
        storage: InstanceStorage | None = None,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.storage = storage
        self.connections: set[_Connection] = set()
        self._streams: dict[str, asyncio.Future[Channel]] = {}
        self._servers: list[asyncio.Server] = []
        self._socket_path: Path | None = None
        self.tcp_port: int | None = None

    async def listen_unix(self, path: Path) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await loop.create_unix_server(lambda: _Connection(self), path=str(path))
        os.chmod(path, 0o600)
        self._socket_path = path
        self._servers.append(server)

    async def listen_tcp(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), host=host, port=0)
        port = int(server.sockets[0].getsockname()[1])
        self.tcp_port = port
        self._servers.append(server)
        return port

    def expect_stream(self, request_id: str) -> asyncio.Future[Channel]:
        """A future for the ASGI channel the runtime will open for ``request_id``.
        Cancel it if the call ends without one."""
        future: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
        self._streams[request_id] = future
        future.add_done_callback(lambda f: self._streams.pop(request_id, None))
        return future

    def take_stream_waiter(self, request_id: str) -> asyncio.Future[Channel] | None:
        future = self._streams.pop(request_id, None)
        return future if future is not None and not future.done() else None

    def close(self) -> None:
        for future in list(self._streams.values()):
            future.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            if conn._transport is not None:
                conn._transport.close()
        self._servers.clear()
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()
