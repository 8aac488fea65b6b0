"""``aws-chunked`` bodies: S3's streaming upload encoding, decoded as it arrives.

With ``x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` a client signs
the body chunk by chunk instead of hashing it whole before sending::

    10000;chunk-signature=<64 hex>\\r\\n
    <65536 bytes>\\r\\n
    400;chunk-signature=<64 hex>\\r\\n
    <1024 bytes>\\r\\n
    0;chunk-signature=<64 hex>\\r\\n
    \\r\\n

Each chunk's signature chains from the previous one (the first from the
request's signature), over ``AWS4-HMAC-SHA256-PAYLOAD``, the request time, the
scope, the previous signature, the hash of nothing and the hash of the chunk.
``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` is the same framing without signatures,
ending with trailer headers (a checksum such as ``x-amz-checksum-crc32``);
``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` has both, and signs the trailer.

:class:`ChunkedDecoder` is pure and incremental: feed it what the network gives,
it returns the payload bytes and raises :class:`S3Error` as soon as something is
wrong; chunks are hashed as they arrive, never held whole.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from nimbus.objects.errors import S3Error

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MAX_LINE = 4096


@dataclass(frozen=True)
class ChunkSigner:
    """What chunk signatures are checked with: the signing key of the request's scope,
    its time and scope, and the request's own signature (the seed)."""

    key: bytes
    amz_date: str
    scope: str
    seed: str

    def chunk(self, previous: str, digest: str) -> str:
        to_sign = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{self.amz_date}\n{self.scope}\n{previous}\n"
            f"{EMPTY_SHA256}\n{digest}"
        )
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()

    def trailer(self, previous: str, canonical_trailer: bytes) -> str:
        digest = hashlib.sha256(canonical_trailer).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256-TRAILER\n{self.amz_date}\n{self.scope}\n{previous}\n{digest}"
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()


def _mismatch() -> S3Error:
    return S3Error(
        "SignatureDoesNotMatch",
        "The chunk signature we calculated does not match the signature you provided "
        "(aws-chunked body).",
    )


def _malformed(what: str) -> S3Error:
    return S3Error("IncompleteBody", f"malformed aws-chunked body: {what}")


class ChunkedDecoder:
    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self, signer: ChunkSigner | None) -> None:
        self._signer = signer
        self._previous = signer.seed if signer is not None else ""
        self._state = self._SIZE
        self._line = bytearray()
        self._left = 0
        self._claimed = ""
        self._hash = hashlib.sha256()
        self._trailer_lines: list[bytes] = []
        self.trailers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, data: bytes) -> bytes:
        """The payload bytes in ``data`` (possibly none)."""
        out = bytearray()
        view = memoryview(data)
        i = 0
        n = len(data)
        while i < n:
            state = self._state
            if state == self._DATA:
                take = min(self._left, n - i)
                piece = view[i : i + take]
                out += piece
                if self._signer is not None:
                    self._hash.update(piece)
                self._left -= take
                i += take
                if self._left == 0:
                    self._state = self._DATA_END
                continue
            if state == self._DONE:
                raise _malformed("bytes after the final chunk")
            # Line-oriented states: collect up to CRLF.
            end = data.find(b"\n", i)
            if end < 0:
                self._line += view[i:]
                i = n
                if len(self._line) > _MAX_LINE:
                    raise _malformed("a line is too long")
                continue
            self._line += view[i : end + 1]
            i = end + 1
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r\n"):
                raise _malformed("lines must end with CRLF")
            self._line_done(line[:-2])
        return bytes(out)

    def _line_done(self, line: bytes) -> None:
        state = self._state
        if state == self._DATA_END:
            if line:
                raise _malformed("a chunk is longer than its size says")
            self._end_chunk()
            self._state = self._SIZE
        elif state == self._SIZE:
            size_text, _, ext = line.partition(b";")
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _malformed(f"bad chunk size {size_text[:20]!r}") from None
            self._claimed = ""
            if self._signer is not None:
                name, _, value = ext.partition(b"=")
                if name.strip() != b"chunk-signature" or not value:
                    raise _malformed("each chunk needs a chunk-signature")
                self._claimed = value.strip().decode("ascii", "replace").lower()
            self._hash = hashlib.sha256()
            if size == 0:
                self._end_chunk()
                self._state = self._TRAILER
            else:
                self._left = size
                self._state = self._DATA
        elif state == self._TRAILER:
            if not line:
                self._end_trailer()
                self._state = self._DONE
                return
            self._trailer_lines.append(line)
            if len(self._trailer_lines) > 32:
                raise _malformed("too many trailer headers")

    def _end_chunk(self) -> None:
        if self._signer is None:
            return
        expected = self._signer.chunk(self._previous, self._hash.hexdigest())
        if not hmac.compare_digest(expected, self._claimed):
            raise _mismatch()
        self._previous = expected

    def _end_trailer(self) -> None:
        signature = None
        canonical = bytearray()
        for raw in self._trailer_lines:
            name, sep, value = raw.partition(b":")
            if not sep:
                raise _malformed(f"bad trailer line {raw[:40]!r}")
            key = name.strip().lower().decode("ascii", "replace")
            text = value.strip().decode("ascii", "replace")
            if key == "x-amz-trailer-signature":
                signature = text.lower()
                continue
            self.trailers[key] = text
            canonical += f"{key}:{text}\n".encode()
        if self._signer is not None and self._trailer_lines:
            if signature is None:
                raise _malformed("a signed body's trailer needs x-amz-trailer-signature")
            if not hmac.compare_digest(
                self._signer.trailer(self._previous, bytes(canonical)), signature
            ):
                raise _mismatch()

    def finish(self) -> dict[str, str]:
        """The body ended: its trailer headers; raises when it ended early."""
        if self._state != self._DONE:
            raise _malformed("the body ended before its final (zero-length) chunk")
        return self.trailers
