"""Throughput of the SQLite queue: enqueue → lease → ack, in events per second.

    .venv/bin/python bench/queue_throughput.py [--events 20000] [--synchronous NORMAL|FULL]

For each batch size (1 and 32), on a fresh database in a temporary directory:
``--events`` events (100-byte payloads) are enqueued, one transaction per batch
(``enqueue`` for 1, ``enqueue_many`` for 32); then one consumer leases ``batch``
events at a time and acks each one in its own transaction, as a consumer finishing
invocations one by one does. ``end to end`` is events / (enqueue + lease/ack time).
One thread, real clock; prints figures only (nothing is written to RESULTS.md).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nimbus.queue.base import EventState, NewEvent
from nimbus.queue.sqlite import SqliteQueue, Synchronous

BATCHES = (1, 32)
PAYLOAD = b'{"name": "bench", "pad": "' + b"x" * 72 + b'"}'
LEASE_S = 300.0


@dataclass(frozen=True)
class Figures:
    batch: int
    events: int
    enqueue_s: float
    consume_s: float

    def row(self) -> list[str]:
        total = self.enqueue_s + self.consume_s
        return [
            str(self.batch),
            f"{self.events / self.enqueue_s:,.0f}",
            f"{self.events / self.consume_s:,.0f}",
            f"{self.events / total:,.0f}",
            f"{total:.2f}",
        ]


def run(directory: Path, batch: int, events: int, synchronous: Synchronous) -> Figures:
    """Enqueue then drain ``events`` events with batches of ``batch``; returns the timings."""
    queue = SqliteQueue(directory / f"queue-{batch}.db", synchronous=synchronous)
    try:
        started = time.perf_counter()
        for first in range(0, events, batch):
            n = min(batch, events - first)
            if n == 1:
                queue.enqueue(NewEvent("bench", "hello", PAYLOAD), now=time.time())
            else:
                new = [NewEvent("bench", "hello", PAYLOAD) for _ in range(n)]
                queue.enqueue_many(new, now=time.time())
        enqueued = time.perf_counter()
        done = 0
        while leased := queue.lease("bench", limit=batch, lease_s=LEASE_S, now=time.time()):
            for event in leased:
                if not queue.ack(event.id, "bench", b'{"hello": "bench"}', now=time.time()):
                    raise RuntimeError(f"ack of {event.id} refused")
            done += len(leased)
        finished = time.perf_counter()
        if done != events or queue.stats()[EventState.SUCCEEDED] != events:
            raise RuntimeError(f"drained {done} of {events} events")
    finally:
        queue.close()
    return Figures(batch, events, enqueued - started, finished - enqueued)


def table(figures: list[Figures]) -> str:
    headers = ["batch", "enqueue ev/s", "lease+ack ev/s", "end to end ev/s", "total s"]
    rows = [f.row() for f in figures]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per batch size")
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args()
    if args.events < 1:
        parser.error("--events must be >= 1")
    with tempfile.TemporaryDirectory(prefix="nimbus-queue-bench-", dir=args.dir) as tmp:
        figures = [run(Path(tmp), batch, args.events, args.synchronous) for batch in BATCHES]
    print(
        f"SQLite queue, {args.events:,} events per batch size, synchronous={args.synchronous}, "
        f"SQLite {sqlite3.sqlite_version}, one thread"
    )
    print(table(figures))


if __name__ == "__main__":
    main()
