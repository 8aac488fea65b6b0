"""Turn an instance's stdout/stderr pipe into lines, without ever blocking.

The pipe is read whenever it is readable (and on demand, see :meth:`drain`), so
an instance that prints megabytes never blocks on a full pipe and never makes
the platform buffer more than one line. Lines longer than the limit are cut and
marked; a partial line is held until its newline arrives or the pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

_READ_CHUNK = 65536
#: Chunks read per readiness callback, so one chatty instance cannot starve the loop.
_CHUNKS_PER_CALLBACK = 8


class StreamCapture:
    def __init__(self, fd: int, on_line: Callable[[str], None], max_line_bytes: int) -> None:
        self._fd = fd
        self._on_line = on_line
        self._max = max_line_bytes
        self._partial = bytearray()
        self._dropped = 0  # bytes cut from the current over-long line
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        self._read(_CHUNKS_PER_CALLBACK)

    def drain(self) -> None:
        """Read everything already in the pipe now (called before a response is returned)."""
        self._read(1 << 30)

    def _read(self, max_chunks: int) -> None:
        if self.closed:
            return
        for _ in range(max_chunks):
            try:
                data = os.read(self._fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._eof()
                return
            self._feed(data)
            if len(data) < _READ_CHUNK:
                return

    def _feed(self, data: bytes) -> None:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._append(data[start:])
                return
            self._append(data[start:nl])
            self._emit()
            start = nl + 1

    def _append(self, chunk: bytes) -> None:
        room = self._max - len(self._partial)
        if len(chunk) <= room:
            self._partial += chunk
        else:
            self._partial += chunk[: max(room, 0)]
            self._dropped += len(chunk) - max(room, 0)

    def _emit(self) -> None:
        text = self._partial.decode("utf-8", "replace").rstrip("\r")
        if self._dropped:
            text += f" ...[line cut: {self._dropped} more bytes]"
        self._partial.clear()
        self._dropped = 0
        self._on_line(text)

    def _eof(self) -> None:
        if self._partial or self._dropped:
            self._emit()
        self.stop()

    def stop(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._fd)
