"""What the compatibility APIs share on the wire: header bytes as text, and a request
body read whole within a limit."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope


def header_text(value: bytes) -> str:
    """Header bytes as text: UTF-8 when they are, else Latin-1 (lossless)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


async def read_body(scope: Scope, receive: Receive, limit: int, too_large: Exception) -> bytes:
    """The whole body, refused with ``too_large`` as soon as it (or its declared length)
    passes ``limit``."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
