"""The embedded queue: one SQLite database file in WAL mode (e.g. ``<data_dir>/queue.db``).

Durability. Every method that changes the queue commits before it returns. In WAL
mode a commit appends the transaction to the ``-wal`` file with ``write()``; with
``synchronous=NORMAL`` (the default) it is not fsynced at each commit, only at
checkpoints. Written data sits in the operating system's page cache, which outlives the
process: a SIGKILL, a crash or an OOM kill of the server loses nothing that was
committed, and the next open replays the WAL. Only a power loss or a kernel crash can
lose the last transactions (never corrupting the database). ``synchronous="FULL"``
fsyncs the WAL at every commit and survives those too, at the price of one fsync per
write (see ``bench/queue_throughput.py``). NORMAL matches the metadata store, which has the same
exposure; power-loss durability is what the PostgreSQL backend is for.

Concurrency. Every write runs in ``BEGIN IMMEDIATE`` on the one writer connection: it
takes SQLite's single write lock before reading, so a read-then-update (``lease``,
``fail``) is atomic and never fails half-way with ``SQLITE_BUSY``, and two consumers
can never lease the same event. Threads of one process take turns on a
``threading.Lock``; other processes wait on ``busy_timeout``. Reads use pooled reader
connections and WAL snapshots, without waiting for writers.

Why the standard ``sqlite3`` module and not SQLAlchemy Core like the metadata store:
the queue is on the path of every asynchronous invocation (three write transactions
per event), and Core's per-statement machinery cut throughput about sixfold in
``bench/queue_throughput.py``. The SQL is small and SQLite-specific anyway (partial index).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from nimbus.domain.invocation import FunctionError
from nimbus.queue.base import Event, EventState, NewEvent
from nimbus.queue.policy import (
    DeadLetter,
    DeadReason,
    RetryPolicy,
    delivery_decision,
    lease_expired_error,
    retry_decision,
)

#: 1: events.
SCHEMA_VERSION = 1
#: Seconds a write waits for another process's write lock before failing.
BUSY_TIMEOUT_S = 5.0
#: Ids per ``IN (...)`` list, well under SQLite's bound-parameter limit.
_CHUNK = 500
#: Idle reader connections kept for reuse.
_IDLE_READERS = 8

Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS events (
        id            TEXT PRIMARY KEY,
        namespace     TEXT NOT NULL,
        function      TEXT NOT NULL,
        qualifier     TEXT,
        payload       BLOB NOT NULL,
        created_at    REAL NOT NULL,
        queued_at     REAL NOT NULL,
        attempts      INTEGER NOT NULL,
        max_attempts  INTEGER NOT NULL,
        max_age_s     REAL NOT NULL,
        state         TEXT NOT NULL,
        -- Set exactly while queued (scheduled time) or leased (lease expiry): the lease
        -- query is one range scan of ix_events_visible, which holds live events only.
        not_before    REAL,
        lease_owner   TEXT,
        last_error    TEXT,  -- FunctionError.to_dict() as JSON
        result        BLOB,
        dead_reason   TEXT,
        finished_at   REAL
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS ix_events_visible
        ON events (not_before, created_at) WHERE not_before IS NOT NULL
    """,
    # stats (covering), dead_letters (seek and order), purge_succeeded (state prefix).
    """
    CREATE INDEX IF NOT EXISTS ix_events_state
        ON events (state, namespace, function, finished_at)
    """,
    "CREATE TABLE IF NOT EXISTS schema_info (version INTEGER PRIMARY KEY)",
)

_NAMES = (
    "id",
    "namespace",
    "function",
    "qualifier",
    "payload",
    "created_at",
    "queued_at",
    "attempts",
    "max_attempts",
    "max_age_s",
    "state",
    "not_before",
    "lease_owner",
    "last_error",
    "result",
    "dead_reason",
    "finished_at",
)
#: The columns that change after enqueue.
_MUTABLE = (
    "queued_at",
    "attempts",
    "state",
    "not_before",
    "lease_owner",
    "last_error",
    "result",
    "dead_reason",
    "finished_at",
)
_SELECT = f"SELECT {', '.join(_NAMES)} FROM events"
_INSERT = f"INSERT INTO events ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})"
#: Writes an event's mutable columns back (parameters: ``_changes``).
_UPDATE = f"UPDATE events SET {', '.join(f'{c} = :{c}' for c in _MUTABLE)} WHERE id = :id"
#: The event is leased by the consumer (parameters: id, consumer id).
_HELD = "id = ? AND state = 'leased' AND lease_owner = ?"


def connect(path: Path, synchronous: Synchronous = "NORMAL") -> sqlite3.Connection:
    """A connection in WAL mode that leaves transactions to the caller (autocommit)."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def _error(text: str | None) -> FunctionError | None:
    return None if text is None else FunctionError.from_payload(json.loads(text))


def _event(row: sqlite3.Row) -> Event:
    return Event(
        id=row["id"],
        namespace=row["namespace"],
        function=row["function"],
        qualifier=row["qualifier"],
        payload=row["payload"],
        created_at=row["created_at"],
        queued_at=row["queued_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        max_age_s=row["max_age_s"],
        state=EventState(row["state"]),
        not_before=row["not_before"],
        lease_owner=row["lease_owner"],
        last_error=_error(row["last_error"]),
        result=row["result"],
        dead_reason=DeadReason(row["dead_reason"]) if row["dead_reason"] is not None else None,
        finished_at=row["finished_at"],
    )


def _row(event: Event) -> tuple[Any, ...]:
    """Every column of the event, in ``_NAMES`` order."""
    return (
        event.id,
        event.namespace,
        event.function,
        event.qualifier,
        event.payload,
        event.created_at,
        event.queued_at,
        event.attempts,
        event.max_attempts,
        event.max_age_s,
        event.state.value,
        event.not_before,
        event.lease_owner,
        None if event.last_error is None else json.dumps(event.last_error.to_dict()),
        event.result,
        None if event.dead_reason is None else event.dead_reason.value,
        event.finished_at,
    )


def _changes(event: Event) -> dict[str, Any]:
    """Parameters of ``_UPDATE``."""
    values = dict(zip(_NAMES, _row(event), strict=True))
    return {name: values[name] for name in ("id", *_MUTABLE)}


def _dead_filter(namespace: str | None, function: str | None) -> tuple[str, tuple[str, ...]]:
    """WHERE clause and parameters: dead letters of a namespace / function (None: any)."""
    clauses, params = ["state = 'dead'"], []
    if namespace is not None:
        clauses.append("namespace = ?")
        params.append(namespace)
    if function is not None:
        clauses.append("function = ?")
        params.append(function)
    return " AND ".join(clauses), tuple(params)


def _held(event_id: str, consumer_id: str, attempt: int | None) -> tuple[str, tuple[Any, ...]]:
    """WHERE clause and parameters: leased by ``consumer_id`` (in ``attempt``, if given)."""
    if attempt is None:
        return _HELD, (event_id, consumer_id)
    return f"{_HELD} AND attempts = ?", (event_id, consumer_id, attempt)


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _dead(event: Event, reason: DeadReason, error: FunctionError | None, now: float) -> Event:
    return replace(
        event,
        state=EventState.DEAD,
        not_before=None,
        last_error=error,
        dead_reason=reason,
        finished_at=now,
    )


class SqliteQueue:
    """The :class:`~nimbus.queue.base.Queue` on one SQLite file.

    ``rand`` draws the jitter of retry delays (uniform in [0, 1)); tests pass a fixed one.
    """

    def __init__(
        self,
        path: Path,
        *,
        policy: RetryPolicy | None = None,
        synchronous: Synchronous = "NORMAL",
        rand: Callable[[], float] = random.random,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._synchronous: Synchronous = synchronous
        self._policy = policy or RetryPolicy()
        self._rand = rand
        self._lock = threading.Lock()  # held for every write transaction
        self._writer = connect(path, synchronous)
        self._readers_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        with self._write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            version = conn.execute("SELECT max(version) FROM schema_info").fetchone()[0]
            if version is None:
                conn.execute("INSERT INTO schema_info (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{path} has queue schema {version}, newer than this Nimbus "
                    f"({SCHEMA_VERSION}); upgrade Nimbus"
                )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): committed on success, else rolled back."""
        with self._lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A reader connection (autocommit: each SELECT reads one consistent snapshot)."""
        with self._readers_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the queue is closed")
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = connect(self._path, self._synchronous)
        try:
            yield conn
        finally:
            with self._readers_lock:
                keep = not self._closed and len(self._readers) < _IDLE_READERS
                if keep:
                    self._readers.append(conn)
            if not keep:
                conn.close()

    # ---- producers -----------------------------------------------------------
    def enqueue(self, new: NewEvent, *, now: float) -> Event:
        return self.enqueue_many([new], now=now)[0]

    def enqueue_many(self, new: Sequence[NewEvent], *, now: float) -> list[Event]:
        if not new:
            return []
        ids = list(dict.fromkeys(n.id for n in new))
        stored: dict[str, Event] = {}
        with self._write() as conn:
            for chunk in _chunks(ids):
                query = f"{_SELECT} WHERE id IN ({_placeholders(len(chunk))})"
                for row in conn.execute(query, chunk):
                    stored[row["id"]] = _event(row)
            rows = []
            for n in new:
                if n.id in stored:
                    continue
                event = Event(
                    id=n.id,
                    namespace=n.namespace,
                    function=n.function,
                    qualifier=n.qualifier,
                    payload=n.payload,
                    created_at=now,
                    queued_at=now,
                    attempts=0,
                    max_attempts=n.max_attempts,
                    max_age_s=n.max_age_s,
                    state=EventState.QUEUED,
                    not_before=now + n.delay_s,
                    lease_owner=None,
                    last_error=None,
                    result=None,
                    dead_reason=None,
                    finished_at=None,
                )
                stored[n.id] = event
                rows.append(_row(event))
            conn.executemany(_INSERT, rows)
        return [stored[n.id] for n in new]

    # ---- consumers -----------------------------------------------------------
    def lease(self, consumer_id: str, *, limit: int, lease_s: float, now: float) -> list[Event]:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        leased: list[Event] = []
        with self._write() as conn:
            # Events sent to dead letters instead of being leased leave room for more.
            while len(leased) < limit:
                want = limit - len(leased)
                rows = conn.execute(
                    f"{_SELECT} WHERE not_before <= ? ORDER BY not_before, created_at LIMIT ?",
                    (now, want),
                ).fetchall()
                changed = []
                for row in rows:
                    event = _event(row)
                    error = event.last_error
                    if event.state is EventState.LEASED:  # its lease expired
                        error = lease_expired_error(event.lease_owner or "?", event.attempts)
                    reason = delivery_decision(
                        attempts=event.attempts,
                        max_attempts=event.max_attempts,
                        queued_at=event.queued_at,
                        max_age_s=event.max_age_s,
                        now=now,
                    )
                    if reason is not None:
                        event = _dead(event, reason, error, now)
                    else:
                        event = replace(
                            event,
                            state=EventState.LEASED,
                            attempts=event.attempts + 1,
                            not_before=now + lease_s,
                            lease_owner=consumer_id,
                            last_error=error,
                        )
                        leased.append(event)
                    changed.append(_changes(event))
                conn.executemany(_UPDATE, changed)
                if len(rows) < want:
                    break
        return leased

    def ack(
        self,
        event_id: str,
        consumer_id: str,
        result: bytes | None,
        *,
        now: float,
        attempt: int | None = None,
    ) -> bool:
        where, params = _held(event_id, consumer_id, attempt)
        with self._write() as conn:
            done = conn.execute(
                "UPDATE events SET state = 'succeeded', not_before = NULL, result = ?, "
                f"finished_at = ? WHERE {where}",
                (result, now, *params),
            )
        return done.rowcount > 0

    def fail(
        self,
        event_id: str,
        consumer_id: str,
        error: FunctionError,
        *,
        now: float,
        attempt: int | None = None,
    ) -> bool:
        where, params = _held(event_id, consumer_id, attempt)
        with self._write() as conn:
            row = conn.execute(f"{_SELECT} WHERE {where}", params).fetchone()
            if row is None:
                return False
            event = _event(row)
            decision = retry_decision(
                attempts=event.attempts,
                max_attempts=event.max_attempts,
                queued_at=event.queued_at,
                max_age_s=event.max_age_s,
                now=now,
                policy=self._policy,
                rand=self._rand(),
            )
            if isinstance(decision, DeadLetter):
                event = _dead(event, decision.reason, error, now)
            else:
                event = replace(
                    event, state=EventState.QUEUED, not_before=decision.not_before, last_error=error
                )
            conn.execute(_UPDATE, _changes(event))
        return True

    def release(
        self,
        event_id: str,
        consumer_id: str,
        *,
        now: float,
        delay_s: float = 0.0,
        attempt: int | None = None,
    ) -> bool:
        if not delay_s >= 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        where, params = _held(event_id, consumer_id, attempt)
        with self._write() as conn:
            done = conn.execute(
                "UPDATE events SET state = 'queued', attempts = attempts - 1, not_before = ? "
                f"WHERE {where}",
                (now + delay_s, *params),
            )
        return done.rowcount > 0

    def extend(
        self,
        event_id: str,
        consumer_id: str,
        *,
        lease_s: float,
        now: float,
        attempt: int | None = None,
    ) -> bool:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        where, params = _held(event_id, consumer_id, attempt)
        with self._write() as conn:
            done = conn.execute(
                f"UPDATE events SET not_before = ? WHERE {where}", (now + lease_s, *params)
            )
        return done.rowcount > 0

    # ---- queries and housekeeping ----------------------------------------------
    def get(self, event_id: str) -> Event | None:
        with self._read() as conn:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (event_id,)).fetchone()
        return _event(row) if row is not None else None

    def dead_letters(
        self, namespace: str | None = None, function: str | None = None, *, limit: int = 100
    ) -> list[Event]:
        where, params = _dead_filter(namespace, function)
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {where} ORDER BY finished_at, id LIMIT ?", (*params, limit)
            ).fetchall()
        return [_event(row) for row in rows]

    def redrive(
        self,
        *,
        now: float,
        event_ids: Sequence[str] | None = None,
        namespace: str | None = None,
        function: str | None = None,
        limit: int = 1000,
    ) -> int:
        count = 0
        with self._write() as conn:
            if event_ids is not None:
                ids = list(dict.fromkeys(event_ids))
            else:
                where, params = _dead_filter(namespace, function)
                ids = [
                    row["id"]
                    for row in conn.execute(
                        f"SELECT id FROM events WHERE {where} ORDER BY finished_at, id LIMIT ?",
                        (*params, limit),
                    )
                ]
            for chunk in _chunks(ids):
                done = conn.execute(
                    "UPDATE events SET state = 'queued', attempts = 0, queued_at = ?, "
                    "not_before = ?, lease_owner = NULL, result = NULL, dead_reason = NULL, "
                    f"finished_at = NULL WHERE state = 'dead' AND id IN "
                    f"({_placeholders(len(chunk))})",
                    (now, now, *chunk),
                )
                count += done.rowcount
        return count

    def stats(self) -> dict[EventState, int]:
        counts = dict.fromkeys(EventState, 0)
        with self._read() as conn:
            for state, n in conn.execute("SELECT state, count(*) FROM events GROUP BY state"):
                counts[EventState(state)] = n
        return counts

    def purge_succeeded(self, older_than: float, *, limit: int = 10_000) -> int:
        with self._write() as conn:
            done = conn.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events "
                "WHERE state = 'succeeded' AND finished_at < ? LIMIT ?)",
                (older_than, limit),
            )
        return done.rowcount

    def forget_function(self, namespace: str, function: str) -> int:
        with self._write() as conn:
            done = conn.execute(
                "DELETE FROM events WHERE namespace = ? AND function = ?", (namespace, function)
            )
        return done.rowcount

    def close(self) -> None:
        with self._readers_lock:
            self._closed = True
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._lock:
            self._writer.close()
