"""Function logs: buffered in memory, written to SQLite off the invoke path.

``emit`` only appends to a bounded buffer and wakes followers; a background
task writes the buffer in batches every ``flush_interval_s``. If the writer
falls behind by more than ``max_pending`` lines, new lines are counted and
dropped (and the drop is logged as a line of its own), so a flood of output
costs bounded memory. Each function keeps its newest ``max_lines_per_function``
lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    ts REAL NOT NULL,
    request_id TEXT,
    instance_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_function ON logs (namespace, function, id);
CREATE INDEX IF NOT EXISTS logs_by_request ON logs (request_id);
"""


@dataclass(frozen=True)
class LogLine:
    ts: float
    namespace: str
    function: str
    instance_id: str
    request_id: str | None
    stream: str  # stdout | stderr | platform
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "ts": self.ts,
            "request_id": self.request_id,
            "stream": self.stream,
            "message": self.message,
            "instance_id": self.instance_id,
        }


class LogStore:
    def __init__(
        self,
        path: Path,
        max_lines_per_function: int,
        max_pending: int = 200_000,
        flush_interval_s: float = 0.2,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._max_per_function = max_lines_per_function
        self._max_pending = max_pending
        self._interval = flush_interval_s
        self._pending: list[LogLine] = []
        self._dropped = 0
        self._followers: dict[tuple[str, str], set[asyncio.Queue[LogLine]]] = defaultdict(set)
        self._written_since_trim: dict[tuple[str, str], int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # writing
    def emit(self, line: LogLine) -> None:
        if len(self._pending) >= self._max_pending:
            self._dropped += 1
            return
        self._pending.append(line)
        followers = self._followers.get((line.namespace, line.function))
        if followers:
            for queue in followers:
                if queue.qsize() < 10_000:
                    queue.put_nowait(line)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nimbus-log-writer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self._pending.append(
                LogLine(
                    time.time(),
                    "-",
                    "-",
                    "-",
                    None,
                    "platform",
                    f"log writer fell behind; {dropped} lines dropped",
                )
            )
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        await asyncio.to_thread(self._write, batch)

    def _write(self, batch: list[LogLine]) -> None:
        rows = [
            (x.namespace, x.function, x.ts, x.request_id, x.instance_id, x.stream, x.message)
            for x in batch
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO logs (namespace, function, ts, request_id, instance_id, stream,"
                " message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for x in batch:
                self._written_since_trim[(x.namespace, x.function)] += 1
            for key, count in list(self._written_since_trim.items()):
                if count >= max(1000, self._max_per_function // 10):
                    self._trim(*key)
                    del self._written_since_trim[key]
            self._db.execute("COMMIT")

    def _trim(self, namespace: str, function: str) -> None:
        row = self._db.execute(
            "SELECT id FROM logs WHERE namespace=? AND function=? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (namespace, function, self._max_per_function),
        ).fetchone()
        if row:
            self._db.execute(
                "DELETE FROM logs WHERE namespace=? AND function=? AND id<=?",
                (namespace, function, row[0]),
            )

    # reading
    async def query(
        self,
        namespace: str,
        function: str,
        *,
        request_id: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[LogLine]:
        await self.flush()
        return await asyncio.to_thread(self._query, namespace, function, request_id, since, limit)

    def _query(
        self, namespace: str, function: str, request_id: str | None, since: float | None, limit: int
    ) -> list[LogLine]:
        sql = (
            "SELECT ts, namespace, function, instance_id, request_id, stream, message FROM logs"
            " WHERE namespace=? AND function=?"
        )
        args: list[object] = [namespace, function]
        if request_id is not None:
            sql += " AND request_id=?"
            args.append(request_id)
        if since is not None:
            sql += " AND ts>=?"
            args.append(since)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [LogLine(*r) for r in reversed(rows)]

    def delete_function(self, namespace: str, function: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM logs WHERE namespace=? AND function=?", (namespace, function)
            )

    def follow(self, namespace: str, function: str) -> asyncio.Queue[LogLine]:
        queue: asyncio.Queue[LogLine] = asyncio.Queue()
        self._followers[(namespace, function)].add(queue)
        return queue

    def unfollow(self, namespace: str, function: str, queue: asyncio.Queue[LogLine]) -> None:
        followers = self._followers.get((namespace, function))
        if followers is not None:
            followers.discard(queue)
            if not followers:
                del self._followers[(namespace, function)]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        with self._lock:
            self._db.close()
