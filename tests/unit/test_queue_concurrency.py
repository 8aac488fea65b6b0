"""Concurrent consumers of one SQLite queue never hold the same event at once.

Threads share a queue object; two queue objects on one file stand for two
processes (separate locks and connections); real processes settle it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nimbus.queue.base import EventState, NewEvent
from nimbus.queue.sqlite import SqliteQueue

T0 = 1_700_000_000.0
#: Long enough never to expire during a test: any event seen twice was handed out twice.
LEASE_S = 3600.0


def _fill(queue: SqliteQueue, n: int) -> set[str]:
    events = queue.enqueue_many([NewEvent("ns", f"fn{i % 3}", b"%d" % i) for i in range(n)], now=T0)
    return {e.id for e in events}


def test_threads_never_lease_one_event_twice(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queues = [SqliteQueue(path), SqliteQueue(path)]
    ids = _fill(queues[0], 3000)
    workers = 8
    start = threading.Barrier(workers)

    def consume(worker: int) -> tuple[list[str], int]:
        queue = queues[worker % 2]
        consumer = f"c{worker}"
        rng = random.Random(worker)
        got: list[str] = []
        refused = 0
        start.wait()
        while batch := queue.lease(consumer, limit=rng.randint(1, 8), lease_s=LEASE_S, now=T0):
            for event in batch:
                assert event.lease_owner == consumer and event.attempts == 1
                got.append(event.id)
                refused += not queue.ack(event.id, consumer, b"ok", now=T0)
        return got, refused

    try:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(consume, range(workers)))
        leased = [event_id for got, _ in results for event_id in got]
        assert len(leased) == len(set(leased)), "an event was leased twice"
        assert set(leased) == ids
        assert sum(refused for _, refused in results) == 0
        assert sum(1 for got, _ in results if got) > 1  # the work really was shared
        assert queues[1].stats()[EventState.SUCCEEDED] == len(ids)
    finally:
        for queue in queues:
            queue.close()


CONSUMER = """
import json, sys
from pathlib import Path
from nimbus.queue.sqlite import SqliteQueue

path, consumer, now, lease_s = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), 3600.0
queue = SqliteQueue(path)
got = []
while batch := queue.lease(consumer, limit=4, lease_s=lease_s, now=now):
    for event in batch:
        got.append(event.id)
        assert queue.ack(event.id, consumer, None, now=now)
print(json.dumps(got))
"""


def test_processes_never_lease_one_event_twice(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    ids = _fill(queue, 1500)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(path), f"p{n}", str(T0)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    leased = [event_id for out in outputs for event_id in json.loads(out)]
    try:
        assert len(leased) == len(set(leased)), "an event was leased twice"
        assert set(leased) == ids
        assert queue.stats()[EventState.SUCCEEDED] == len(ids)
    finally:
        queue.close()
