"""The ASGI channel between the gateway and an HTTP service instance.

An instance serving an HTTP request (or a WebSocket session) opens a second
connection to its Runtime API and upgrades it::

    GET /2018-06-01/runtime/invocation/{request_id}/stream HTTP/1.1
    Connection: Upgrade
    Upgrade: nimbus-asgi

    HTTP/1.1 101 Switching Protocols

From then on both sides send ASGI messages as frames, in order, until the
connection closes. A frame is::

    header_len: u32 big-endian | body_len: u32 big-endian | header | body

``header`` is the message as a JSON object without its payload; ``body`` is the
payload as raw bytes, never base64, and ``header["~"]`` names the key it came
from (``body``, ``bytes`` or ``text``, the latter UTF-8). Header lists
(``headers``) travel as ``[[name, value], ...]`` latin-1 strings and come back as
byte pairs. For WebSocket ``bytes``/``text`` messages the key not used is set to
``None``, as ASGI requires.

A frame's header is at most :data:`MAX_HEADER_BYTES` and its body at most
:data:`MAX_BODY_BYTES`; a peer that sends more breaks the channel
(:class:`FrameError`). Senders split longer HTTP bodies into several
``more_body`` messages.

The built-in Python runtime (``runtimes/python/bootstrap.py``) has its own copy
of this codec, since it may import nothing from Nimbus; the unit tests check the
two agree.
"""

from __future__ import annotations

import asyncio
import collections
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any, cast

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "UPGRADE_TOKEN",
    "Channel",
    "FrameDecoder",
    "FrameError",
    "encode_frame",
]

UPGRADE_TOKEN = b"nimbus-asgi"
MAX_HEADER_BYTES = 1 << 20
#: The largest payload of one frame: uvicorn's default WebSocket message limit.
MAX_BODY_BYTES = 16 << 20
_PREFIX = struct.Struct("!II")
_PAYLOAD_KEYS = ("body", "bytes", "text")
#: Incoming bytes buffered before the channel stops reading from its peer.
_HIGH_WATER = 256 * 1024


class FrameError(Exception):
    """A peer sent something that is not a valid frame."""


def encode_frame(message: Mapping[str, Any]) -> list[bytes]:
    """The frame of one ASGI message, as pieces to write in order."""
    head: dict[str, Any] = {}
    body = b""
    for key, value in message.items():
        if key in _PAYLOAD_KEYS:
            if value is None:
                continue
            body = cast(str, value).encode("utf-8") if key == "text" else bytes(value)
            head["~"] = key
        elif key == "headers":
            head[key] = [
                [bytes(name).decode("latin-1"), bytes(val).decode("latin-1")]
                for name, val in cast(Iterable[tuple[bytes, bytes]], value)
            ]
        else:
            head[key] = value
    raw = json.dumps(head, separators=(",", ":")).encode()
    if len(raw) > MAX_HEADER_BYTES or len(body) > MAX_BODY_BYTES:
        raise FrameError(f"an ASGI message of {len(raw) + len(body)} bytes is too large")
    return [_PREFIX.pack(len(raw), len(body)), raw, body]


def decode_message(head: bytes, body: bytes) -> dict[str, Any]:
    """The ASGI message of one frame."""
    try:
        message = json.loads(head)
    except ValueError as exc:
        raise FrameError(f"a frame header is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise FrameError("a frame header is not an ASGI message")
    key = message.pop("~", None)
    if key is not None:
        if key not in _PAYLOAD_KEYS:
            raise FrameError(f"unknown payload key {key!r}")
        if key in ("bytes", "text"):
            message["bytes"] = message["text"] = None
        try:
            message[key] = body.decode("utf-8") if key == "text" else body
        except UnicodeDecodeError:
            raise FrameError("a text message is not UTF-8") from None
    headers = message.get("headers")
    if headers is not None:
        try:
            message["headers"] = [
                (str(name).encode("latin-1"), str(val).encode("latin-1")) for name, val in headers
            ]
        except (TypeError, ValueError, UnicodeEncodeError):
            raise FrameError("frame headers are not [name, value] latin-1 pairs") from None
    return message


class FrameDecoder:
    """Bytes in, ASGI messages out; frames may arrive split anywhere."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= _PREFIX.size:
            head_len, body_len = _PREFIX.unpack_from(buf)
            if head_len > MAX_HEADER_BYTES or body_len > MAX_BODY_BYTES:
                raise FrameError(f"a frame of {head_len} + {body_len} bytes is too large")
            end = _PREFIX.size + head_len + body_len
            if len(buf) < end:
                break
            head = bytes(buf[_PREFIX.size : _PREFIX.size + head_len])
            body = bytes(buf[_PREFIX.size + head_len : end])
            del buf[:end]
            out.append(decode_message(head, body))
        return out


class Channel:
    """The gateway's end of an upgraded Runtime API connection.

    :meth:`receive` yields the instance's messages (``None`` once the connection is
    closed); :meth:`send` writes one and waits while the instance reads slowly. The
    Runtime API connection feeds it (:meth:`feed`, :meth:`feed_eof`) and forwards
    the transport's flow control (:meth:`pause_writing`, :meth:`resume_writing`).
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._decoder = FrameDecoder()
        self._messages: collections.deque[dict[str, Any]] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self._receiver: asyncio.Future[None] | None = None
        self._drainer: asyncio.Future[None] | None = None
        self._write_paused = False
        self.closed = False
        #: Why the channel broke, if it did (a frame error): for the gateway's log.
        self.error: str | None = None

    # ---- fed by the Runtime API connection -------------------------------
    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            messages = self._decoder.feed(data)
        except FrameError as exc:
            self.error = str(exc)
            self.close()
            return
        for message in messages:
            self._messages.append(message)
            self._buffered += _size(message)
        if not self._reading_paused and (
            self._buffered + self._decoder.pending_bytes > _HIGH_WATER and self._messages
        ):
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake_receiver()

    def feed_eof(self) -> None:
        self.closed = True
        self._wake_receiver()
        self._wake_drainer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainer()

    # ---- used by the gateway ------------------------------------------------
    async def receive(self) -> dict[str, Any] | None:
        """The instance's next message, or None when the channel is closed."""
        while not self._messages:
            if self.closed:
                return None
            self._receiver = asyncio.get_running_loop().create_future()
            try:
                await self._receiver
            finally:
                self._receiver = None
        message = self._messages.popleft()
        self._buffered -= _size(message)
        if self._reading_paused and self._buffered <= _HIGH_WATER // 4:
            self._reading_paused = False
            if not self.closed:
                self._transport.resume_reading()
        return message

    async def send(self, message: Mapping[str, Any]) -> bool:
        """Write one message to the instance; False if the channel is closed."""
        if self.closed:
            return False
        self._transport.writelines(encode_frame(message))
        while self._write_paused and not self.closed:
            self._drainer = asyncio.get_running_loop().create_future()
            try:
                await self._drainer
            finally:
                self._drainer = None
        return not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._transport.close()
        self._wake_receiver()
        self._wake_drainer()

    def _wake_receiver(self) -> None:
        if self._receiver is not None and not self._receiver.done():
            self._receiver.set_result(None)

    def _wake_drainer(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)


def _size(message: dict[str, Any]) -> int:
    payload = message.get("body") or message.get("bytes") or message.get("text") or b""
    return len(payload) + 64
