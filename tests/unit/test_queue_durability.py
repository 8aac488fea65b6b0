"""Nothing committed is lost when the process holding the queue is SIGKILLed.

A child process writes to the queue and reports each id only after the call
returned; it is killed with SIGKILL (no close, no checkpoint, no atexit). The
parent reopens the file and must find every reported change.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from nimbus.queue.base import EventState
from nimbus.queue.sqlite import SqliteQueue

T0 = 1_700_000_000.0

#: Enqueues forever, printing each id once enqueue has returned.
STREAM = """
import sys
from pathlib import Path
from nimbus.queue.base import NewEvent
from nimbus.queue.sqlite import SqliteQueue

queue = SqliteQueue(Path(sys.argv[1]))
n = 0
while True:
    event = queue.enqueue(NewEvent("ns", "fn", b"%d" % n), now=1_700_000_000.0 + n)
    print(event.id, flush=True)
    n += 1
"""

#: Enqueues, leases, acks, fails, enqueues once more and kills itself at once.
SELF_KILL = """
import json, os, signal, sys
from pathlib import Path
from nimbus.domain.invocation import FunctionError
from nimbus.queue.base import NewEvent
from nimbus.queue.sqlite import SqliteQueue

t0 = 1_700_000_000.0
queue = SqliteQueue(Path(sys.argv[1]))
batch = queue.enqueue_many([NewEvent("ns", "fn", b"%d" % n) for n in range(10)], now=t0)
acked, failed, held = queue.lease("c1", limit=3, lease_s=30.0, now=t0)
assert queue.ack(acked.id, "c1", b"done", now=t0)
assert queue.fail(failed.id, "c1", FunctionError("E", "boom"), now=t0)
last = queue.enqueue(NewEvent("ns", "fn", b"last", max_attempts=1), now=t0)
print(json.dumps({"ids": [e.id for e in batch], "acked": acked.id, "failed": failed.id,
                  "held": held.id, "last": last.id}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_sigkill_while_enqueueing_loses_no_acknowledged_event(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    child = subprocess.Popen(
        [sys.executable, "-c", STREAM, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    reported = [child.stdout.readline().strip() for _ in range(200)]
    # Killed at an arbitrary point, quite likely in the middle of the next transaction.
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    # Read on through the same buffered reader (communicate() would bypass its buffer).
    rest = child.stdout.read()
    child.stdout.close()
    reported += [line for line in rest.splitlines() if len(line) == 36]

    assert _integrity(path) == "ok"
    queue = SqliteQueue(path)
    try:
        missing = [event_id for event_id in reported if queue.get(event_id) is None]
        assert missing == []
        stats = queue.stats()
        # Everything reported is there; at most the one in flight may be there too.
        assert len(reported) <= stats[EventState.QUEUED] <= len(reported) + 1
    finally:
        queue.close()


def test_sigkill_right_after_the_calls_return(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    child = subprocess.run(
        [sys.executable, "-c", SELF_KILL, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    report = json.loads(child.stdout)
    # The changes were only in the write-ahead log, never checkpointed into the file:
    # reopening must replay it.
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0

    assert _integrity(path) == "ok"
    queue = SqliteQueue(path)
    try:
        for event_id in report["ids"]:
            assert queue.get(event_id) is not None
        acked = queue.get(report["acked"])
        assert acked is not None
        assert (acked.state, acked.result) == (EventState.SUCCEEDED, b"done")
        failed = queue.get(report["failed"])
        assert failed is not None
        assert (failed.state, failed.attempts) == (EventState.QUEUED, 1)
        assert failed.last_error is not None and failed.last_error.error_type == "E"
        held = queue.get(report["held"])
        assert held is not None
        assert (held.state, held.lease_owner) == (EventState.LEASED, "c1")
        last = queue.get(report["last"])
        assert last is not None and last.state is EventState.QUEUED
        # The dead consumer's lease runs out and the event is delivered again; the
        # single-attempt "last" event is delivered once.
        got = {e.id: e for e in queue.lease("c2", limit=20, lease_s=30.0, now=T0 + 3600)}
        assert got[report["held"]].attempts == 2
        assert report["acked"] not in got
        assert got[report["last"]].attempts == 1
        assert queue.stats()[EventState.DEAD] == 0
    finally:
        queue.close()
