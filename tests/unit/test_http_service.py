"""HTTP services, in process: the ASGI frame codec (the platform's and the runtime's copy
agree), the Runtime API's upgrade into a channel, the runtime's WSGI/ASGI interface
detection, and its WSGI and ASGI request handling over a real socket pair."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from nimbus.runtime_api.channel import (
    MAX_BODY_BYTES,
    Channel,
    FrameDecoder,
    FrameError,
    encode_frame,
)
from nimbus.runtime_api.server import NextEvent, RuntimeEndpoint
from nimbus.runtimes.registry import BOOTSTRAP


def _load_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nimbus_bootstrap_under_test", BOOTSTRAP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


boot = _load_bootstrap()

MESSAGES: list[dict[str, Any]] = [
    {"type": "http.request", "body": b"\x00\xffbinary", "more_body": True},
    {"type": "http.request", "body": b"", "more_body": False},
    {"type": "http.disconnect"},
    {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"x-latin", "é".encode("latin-1"))],
    },
    {"type": "http.response.body", "body": b"hello", "more_body": False},
    {"type": "websocket.connect"},
    {"type": "websocket.accept", "subprotocol": "chat", "headers": []},
    {"type": "websocket.receive", "bytes": None, "text": "héllo ✓"},
    {"type": "websocket.send", "bytes": b"\x01\x02", "text": None},
    {"type": "websocket.close", "code": 4001, "reason": "bye"},
    {"type": "websocket.disconnect", "code": 1006},
]


def _normal(message: dict[str, Any]) -> dict[str, Any]:
    """Header pairs as tuples, as both decoders give them."""
    out = dict(message)
    if "headers" in out:
        out["headers"] = [tuple(pair) for pair in out["headers"]]
    return out


# ---- framing ------------------------------------------------------------------------


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m["type"])
def test_platform_frames_decode_in_the_runtime_and_back(message: dict[str, Any]) -> None:
    frame = b"".join(encode_frame(message))
    head_len, body_len = struct.unpack("!II", frame[:8])
    decoded = boot._unframe(frame[8 : 8 + head_len], frame[8 + head_len :])
    assert decoded == _normal(message)
    assert len(frame) == 8 + head_len + body_len
    # And the runtime's frame decodes on the platform.
    assert FrameDecoder().feed(b"".join(boot._frame(message))) == [_normal(message)]


def test_bodies_travel_raw_not_base64() -> None:
    body = bytes(range(256)) * 100
    frame = b"".join(encode_frame({"type": "http.request", "body": body, "more_body": False}))
    assert len(frame) < len(body) + 100
    assert body in frame


def test_frames_split_anywhere_decode_once_complete() -> None:
    stream = b"".join(b"".join(encode_frame(m)) for m in MESSAGES)
    decoder = FrameDecoder()
    out: list[dict[str, Any]] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == [_normal(m) for m in MESSAGES]
    assert decoder.pending_bytes == 0


def test_oversized_or_malformed_frames_are_refused() -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(struct.pack("!II", 10, MAX_BODY_BYTES + 1))
    with pytest.raises(FrameError):
        FrameDecoder().feed(struct.pack("!II", 3, 0) + b"{x}")
    with pytest.raises(FrameError):
        FrameDecoder().feed(struct.pack("!II", 2, 0) + b"[]")
    with pytest.raises(FrameError):
        encode_frame({"type": "websocket.send", "bytes": b"x" * (MAX_BODY_BYTES + 1)})


def test_the_runtime_splits_large_http_bodies_into_frames() -> None:
    body = b"a" * (2 * boot._MAX_BODY + 5)
    pieces = boot._pieces({"type": "http.response.body", "body": body, "more_body": False})
    assert [len(p["body"]) for p in pieces] == [boot._MAX_BODY, boot._MAX_BODY, 5]
    assert [p["more_body"] for p in pieces] == [True, True, False]
    assert b"".join(p["body"] for p in pieces) == body
    small = {"type": "http.response.body", "body": b"x"}
    assert boot._pieces(small) == [small]


class _Transport:
    """What Channel uses of an asyncio transport."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = False
        self.closed = False

    def writelines(self, pieces: list[bytes]) -> None:
        self.written.append(b"".join(pieces))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True


def test_channel_delivers_in_order_stops_reading_when_full_and_ends_with_none() -> None:
    async def scenario() -> None:
        transport = _Transport()
        channel = Channel(transport)  # type: ignore[arg-type]
        chunk = {"type": "http.response.body", "body": b"x" * 65536, "more_body": True}
        for _ in range(8):
            channel.feed(b"".join(encode_frame(chunk)))
        assert transport.paused, "the channel kept reading while 512 KiB waited"
        for _ in range(8):
            message = await channel.receive()
            assert message is not None and len(message["body"]) == 65536
        assert not transport.paused
        assert await channel.send({"type": "http.request", "body": b"in", "more_body": False})
        assert FrameDecoder().feed(transport.written[0])[0]["body"] == b"in"
        channel.feed_eof()
        assert await channel.receive() is None
        assert not await channel.send({"type": "http.disconnect"})

    asyncio.run(scenario())


def test_channel_breaks_on_a_bad_frame() -> None:
    async def scenario() -> None:
        transport = _Transport()
        channel = Channel(transport)  # type: ignore[arg-type]
        channel.feed(struct.pack("!II", 1, 0) + b"?")
        assert await channel.receive() is None
        assert transport.closed and channel.error is not None

    asyncio.run(scenario())


# ---- the Runtime API's upgrade ------------------------------------------------------------


class _Handler:
    def next_invocation(self) -> asyncio.Future[NextEvent]:
        return asyncio.get_running_loop().create_future()

    def on_response(self, request_id: str | None, body: bytes) -> bool:
        return False

    def on_error(self, request_id: str | None, body: bytes, error_type: str | None) -> bool:
        return False

    def on_init_error(self, body: bytes, error_type: str | None) -> None:
        pass

    def on_init_ready(self) -> None:
        pass


def _upgrade(request_id: str, upgrade: str = "nimbus-asgi") -> bytes:
    return (
        f"GET /2018-06-01/runtime/invocation/{request_id}/stream HTTP/1.1\r\nHost: x\r\n"
        f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n"
    ).encode()


def test_runtime_api_upgrades_the_awaited_request_into_a_channel(tmp_path: Path) -> None:
    async def scenario() -> None:
        endpoint = RuntimeEndpoint(_Handler(), 1 << 20)
        path = tmp_path / "rt.sock"
        await endpoint.listen_unix(path)
        stream = endpoint.expect_stream("req-1")

        # Unknown request ids and other protocols are refused.
        for request_id, upgrade in (("req-2", "nimbus-asgi"), ("req-1", "websocket")):
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(_upgrade(request_id, upgrade))
            answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 400"), answer
            writer.close()
        assert not stream.done()

        reader, writer = await asyncio.open_unix_connection(str(path))
        first = {"type": "http.response.start", "status": 204, "headers": []}
        writer.write(_upgrade("req-1") + b"".join(boot._frame(first)))  # frames may follow
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols"), head
        channel = await asyncio.wait_for(stream, 5)
        assert await channel.receive() == first
        await channel.send({"type": "http.disconnect"})
        prefix = await reader.readexactly(8)
        head_len, body_len = struct.unpack("!II", prefix)
        got = boot._unframe(await reader.readexactly(head_len), await reader.readexactly(body_len))
        assert got == {"type": "http.disconnect"}
        writer.close()
        assert await asyncio.wait_for(channel.receive(), 5) is None

        # A second upgrade for the same request is refused; closing cancels waiters.
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(_upgrade("req-1"))
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        pending = endpoint.expect_stream("req-3")
        endpoint.close()
        assert pending.cancelled()

    asyncio.run(scenario())


# ---- interface detection ---------------------------------------------------------------


async def _asgi3(scope: Any, receive: Any, send: Any) -> None:
    pass


class _Asgi3Class:
    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        pass

    def __await__(self) -> Iterator[None]:
        yield from ()


class _Asgi2Class:
    def __init__(self, scope: Any) -> None:
        pass

    async def __call__(self, receive: Any, send: Any) -> None:
        pass


class _AsgiObject:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class _WsgiObject:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


class _WsgiClass:
    """PEP 3333's class-based app: instantiated per request, iterated."""

    def __init__(self, environ: Any, start_response: Any) -> None:
        pass

    def __iter__(self) -> Iterator[bytes]:
        yield b""


def _wsgi(environ: Any, start_response: Any) -> list[bytes]:
    return []


@pytest.mark.parametrize(
    ("app", "kind"),
    [
        (_asgi3, "asgi3"),
        (functools.partial(_asgi3), "asgi3"),
        (_Asgi3Class, "asgi3"),
        (_Asgi2Class, "asgi2"),
        (_AsgiObject(), "asgi3"),
        (_WsgiObject(), "wsgi"),
        (_WsgiClass, "wsgi"),
        (_wsgi, "wsgi"),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", type(v).__name__),
)
def test_interface_detection(app: Any, kind: str) -> None:
    assert boot._interface(app) == kind


def test_interface_detection_of_real_frameworks() -> None:
    import fastapi
    import flask
    import starlette.applications

    assert boot._interface(fastapi.FastAPI()) == "asgi3"
    assert boot._interface(starlette.applications.Starlette()) == "asgi3"
    assert boot._interface(flask.Flask("x")) == "wsgi"
    assert boot._interface(flask.Flask("x").wsgi_app) == "wsgi"


def test_load_app_follows_attribute_paths_and_names_what_is_missing() -> None:
    assert boot._load_app("json:decoder.JSONDecoder") is json.decoder.JSONDecoder
    with pytest.raises(boot._Fault) as missing:
        boot._load_app("json:nothing_here")
    assert missing.value.error_type == "Runtime.HandlerNotFound"
    with pytest.raises(boot._Fault) as malformed:
        boot._load_app("json:")
    assert malformed.value.error_type == "Runtime.MalformedHandlerName"


# ---- WSGI and ASGI over a real socket --------------------------------------------------------


def _scope(**extra: Any) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/fn/default/svc/caf\u00e9/x",
        "raw_path": b"/fn/default/svc/caf%C3%A9/x",
        "query_string": b"a=1&b=%20",
        "root_path": "/fn/default/svc",
        "headers": [
            (b"host", b"example.test:8080"),
            (b"content-type", b"text/plain"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"x-thing", b"one"),
        ],
        "client": ("10.0.0.9", 5555),
        "server": ("127.0.0.1", 8080),
    }
    scope.update(extra)
    return scope


class _Gateway:
    """The platform's end of a channel, blocking, for tests of the runtime's end."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.inbox: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(b"".join(encode_frame(message)))

    def receive(self) -> dict[str, Any] | None:
        while not self.inbox:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.inbox.extend(self.decoder.feed(data))
        return self.inbox.pop(0)

    def all(self) -> list[dict[str, Any]]:
        out = []
        while (message := self.receive()) is not None:
            out.append(message)
        return out


def test_wsgi_request_environ_input_and_streamed_response() -> None:
    seen: dict[str, Any] = {}
    closed = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].readline() + environ["wsgi.input"].read()
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-A", "b")])

        def body() -> Iterator[bytes]:
            try:
                yield b"one,"
                yield b""
                yield b"two"
            finally:
                closed.append(True)

        return body()

    runtime_end, gateway_end = socket.socketpair()
    gateway = _Gateway(gateway_end)
    gateway.send({"type": "http.request", "body": b"line1\nrest ", "more_body": True})
    gateway.send({"type": "http.request", "body": b"of it", "more_body": False})
    channel = boot._SyncChannel(runtime_end, b"")
    status = boot._wsgi_call(app, _scope(), channel)
    # The runtime half-closes and waits for the platform to close its end.
    closing = threading.Thread(target=channel.close)
    closing.start()
    assert status == 201 and closed == [True]
    assert seen["body"] == b"line1\nrest of it"
    assert seen["SCRIPT_NAME"] == "/fn/default/svc"
    assert seen["PATH_INFO"] == "/café/x".encode().decode("latin-1")  # PEP 3333
    assert seen["QUERY_STRING"] == "a=1&b=%20"
    assert seen["CONTENT_TYPE"] == "text/plain" and "CONTENT_LENGTH" not in seen
    assert seen["HTTP_COOKIE"] == "a=1; b=2" and seen["HTTP_X_THING"] == "one"
    assert seen["HTTP_HOST"] == "example.test:8080"
    assert (seen["REMOTE_ADDR"], seen["SERVER_PORT"]) == ("10.0.0.9", "8080")
    messages = gateway.all()
    assert messages[0] == {
        "type": "http.response.start",
        "status": 201,
        "headers": [(b"content-type", b"text/plain"), (b"x-a", b"b")],
    }
    bodies = [(m["body"], m["more_body"]) for m in messages[1:]]
    assert bodies == [(b"one,", True), (b"two", True), (b"", False)]
    gateway.sock.close()
    closing.join(5)
    assert not closing.is_alive()


def test_wsgi_stops_iterating_when_the_client_leaves() -> None:
    produced = []
    closed = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])

        def forever() -> Iterator[bytes]:
            try:
                while True:
                    produced.append(1)
                    yield b"tick"
            finally:
                closed.append(True)

        return forever()

    runtime_end, gateway_end = socket.socketpair()
    gateway = _Gateway(gateway_end)
    gateway.send({"type": "http.request", "body": b"", "more_body": False})
    channel = boot._SyncChannel(runtime_end, b"")
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(boot._wsgi_call(app, _scope(), channel)))
    worker.start()
    assert gateway.receive()["type"] == "http.response.start"  # type: ignore[index]
    for _ in range(3):
        assert gateway.receive()["body"] == b"tick"  # type: ignore[index]
    gateway.send({"type": "http.disconnect"})
    worker.join(5)
    assert not worker.is_alive() and closed == [True] and result == [200]
    gateway.sock.close()
    channel.close()


def test_asgi_call_streams_both_ways_and_reports_disconnect() -> None:
    log: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message["body"]
            if not message["more_body"]:
                break
        log.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        log.append(await receive())  # the client leaves
        await send({"type": "http.response.body", "body": b"ignored", "more_body": True})

    async def scenario() -> list[dict[str, Any]]:
        runtime_end, gateway_end = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=runtime_end)
        chan = boot._AsyncChannel(reader, writer)
        g_reader, g_writer = await asyncio.open_connection(sock=gateway_end)
        for message in (
            {"type": "http.request", "body": b"x" * 100, "more_body": True},
            {"type": "http.request", "body": b"y", "more_body": False},
        ):
            g_writer.writelines(encode_frame(message))
        call = asyncio.ensure_future(boot._asgi_call(app, _scope(), chan))
        decoder, got = FrameDecoder(), []
        while len(got) < 2:
            got.extend(decoder.feed(await g_reader.read(65536)))
        g_writer.writelines(encode_frame({"type": "http.disconnect"}))
        assert await asyncio.wait_for(call, 5) == 200
        closing = asyncio.ensure_future(chan.close())
        assert await g_reader.read() == b""  # the runtime's end is half-closed...
        g_writer.close()
        await asyncio.wait_for(closing, 5)  # ...until the platform's closes
        return got

    got = asyncio.run(scenario())
    assert log == [b"x" * 100 + b"y", {"type": "http.disconnect"}]
    assert [m["type"] for m in got] == ["http.response.start", "http.response.body"]


def test_asgi_app_that_returns_without_answering_is_an_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    async def scenario() -> None:
        runtime_end, gateway_end = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=runtime_end)
        with pytest.raises(boot._Fault) as fault:
            await boot._asgi_call(app, _scope(), boot._AsyncChannel(reader, writer))
        assert fault.value.error_type == "Runtime.IncompleteResponse"
        writer.close()
        gateway_end.close()

    asyncio.run(scenario())


def test_lifespan_startup_state_and_failures() -> None:
    async def good(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        assert (await receive())["type"] == "lifespan.startup"
        scope["state"]["ready"] = True
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown never comes: the instance is killed

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def unsupported(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError(f"unknown scope {scope['type']}")

    async def scenario() -> None:
        state: dict[str, Any] = {}
        task = await boot._lifespan(good, state)
        assert state == {"ready": True} and task is not None and not task.done()
        task.cancel()
        with pytest.raises(boot._Fault) as fault:
            await boot._lifespan(failing, {})
        assert fault.value.error_type == "Runtime.LifespanStartupFailed"
        assert "no database" in str(fault.value)
        assert await boot._lifespan(unsupported, {}) is None

    asyncio.run(scenario())
