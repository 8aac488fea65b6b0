"""Receiving an object's body: streamed into a temp file, hashed on the way, fsynced.

Pieces are batched (1 MiB) so that hashing and writing run in a worker thread,
one hop per batch, and the event loop never holds more than one batch of a body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.objects.errors import S3Error

#: Bodies are hashed and written in batches of this size (one thread hop each).
WRITE_BATCH = 1024 * 1024


@dataclass
class Received:
    """A body received into a temp file."""

    path: Path
    size: int
    md5: bytes
    sha256: str | None
    #: Base64 checksums computed on request (``crc32``, ``sha1``, ``sha256``).
    checksums: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def receive(
    chunks: AsyncIterator[bytes],
    path: Path,
    *,
    limit: int,
    sha256: bool,
    checksums: Sequence[str] = (),
) -> Received:
    """Stream ``chunks`` into ``path`` (fsynced), at most ``limit`` bytes
    (``EntityTooLarge``), with its MD5 and, when asked, its SHA-256 and the
    ``x-amz-checksum-*`` algorithms in ``checksums``."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256() if sha256 or "sha256" in checksums else None
    sha1 = hashlib.sha1(usedforsecurity=False) if "sha1" in checksums else None
    crc = [0] if "crc32" in checksums else None
    f = await asyncio.to_thread(open, path, "wb")
    size = 0

    def write(data: bytes) -> None:
        md5.update(data)
        if sha is not None:
            sha.update(data)
        if sha1 is not None:
            sha1.update(data)
        if crc is not None:
            crc[0] = zlib.crc32(data, crc[0])
        f.write(data)

    def finish(data: bytes) -> None:
        write(data)
        f.flush()
        os.fsync(f.fileno())
        f.close()

    try:
        buf = bytearray()
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise S3Error(
                    "EntityTooLarge",
                    f"Your proposed upload exceeds the maximum allowed size of {limit} bytes "
                    "per request (NIMBUS_MAX_PUT_OBJECT_BYTES); use a multipart upload",
                    MaxSizeAllowed=str(limit),
                )
            buf += chunk
            if len(buf) >= WRITE_BATCH:
                data = bytes(buf)
                buf.clear()
                await asyncio.to_thread(write, data)
        await asyncio.to_thread(finish, bytes(buf))
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    sums: dict[str, str] = {}
    if crc is not None:
        sums["crc32"] = _b64(crc[0].to_bytes(4, "big"))
    if sha1 is not None:
        sums["sha1"] = _b64(sha1.digest())
    if sha is not None:
        sums["sha256"] = _b64(sha.digest())
    return Received(path, size, md5.digest(), sha.hexdigest() if sha else None, sums)


def check_content_md5(header: str | None, received: Received) -> None:
    """``Content-MD5`` (base64 of the body's MD5), when given, must match the body."""
    if header is None:
        return
    try:
        claimed = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        claimed = b""
    if len(claimed) != 16:
        raise S3Error("InvalidDigest", "The Content-MD5 you specified was invalid.")
    if claimed != received.md5:
        raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
