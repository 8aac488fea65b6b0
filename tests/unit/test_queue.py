"""The durable queue's contract, run against a real SQLite file with a fake clock.

Every test takes ``queue`` (parametrized by backend, SQLite only for now) and a
``clock`` it advances by hand: no sleeps. Retries use ``rand = 0.5`` and a base
of 2 s, so the n-th retry is due ``0.5 * 2 * 2**(n-1)`` = 1, 2, 4... s later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.domain.invocation import FunctionError
from nimbus.queue.base import Event, EventState, NewEvent, Queue
from nimbus.queue.policy import LEASE_EXPIRED, DeadReason, RetryPolicy
from nimbus.queue.sqlite import SqliteQueue

T0 = 1_700_000_000.0
LEASE_S = 30.0
BOOM = FunctionError("ValueError", "boom", ("line 1",))


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _sqlite(path: Path) -> SqliteQueue:
    return SqliteQueue(
        path / "queue.db", policy=RetryPolicy(base_s=2.0, cap_s=60.0), rand=lambda: 0.5
    )


@pytest.fixture(params=["sqlite"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Queue]:
    q = {"sqlite": _sqlite}[request.param](tmp_path)
    yield q
    q.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _new(n: int = 0, **kwargs: Any) -> NewEvent:
    fields: dict[str, Any] = {"namespace": "ns", "function": "fn", "payload": b'{"n": %d}' % n}
    return NewEvent(**(fields | kwargs))


def _lease_one(queue: Queue, clock: FakeClock, consumer: str = "c1") -> Event:
    [event] = queue.lease(consumer, limit=1, lease_s=LEASE_S, now=clock.now)
    return event


# ---- enqueue ------------------------------------------------------------------


def test_enqueue_stores_a_queued_event(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(1, qualifier="prod", max_attempts=5, max_age_s=60.0), now=clock.now)
    assert event.state is EventState.QUEUED
    assert (event.namespace, event.function, event.qualifier) == ("ns", "fn", "prod")
    assert event.payload == b'{"n": 1}'
    assert event.created_at == event.queued_at == event.not_before == clock.now
    assert (event.attempts, event.max_attempts, event.max_age_s) == (0, 5, 60.0)
    assert (event.lease_owner, event.lease_expires_at, event.last_error) == (None, None, None)
    assert (event.result, event.dead_reason, event.finished_at) == (None, None, None)
    assert len(event.id) == 36  # a uuid4
    assert queue.get(event.id) == event
    assert queue.get("no-such-id") is None


def test_payload_bytes_round_trip(queue: Queue, clock: FakeClock) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value, NULs included
    event = queue.enqueue(_new(payload=payload), now=clock.now)
    assert _lease_one(queue, clock).payload == payload
    assert queue.ack(event.id, "c1", b"\x00ok", now=clock.now)
    stored = queue.get(event.id)
    assert stored is not None and stored.result == b"\x00ok"


def test_enqueue_with_an_existing_id_is_idempotent(queue: Queue, clock: FakeClock) -> None:
    first = queue.enqueue(_new(1, id="dedup-1"), now=clock.now)
    clock.advance(5)
    again = queue.enqueue(_new(2, id="dedup-1"), now=clock.now)
    assert again == first  # the stored event, unchanged
    assert queue.stats()[EventState.QUEUED] == 1


def test_enqueue_many_keeps_order_and_dedups(queue: Queue, clock: FakeClock) -> None:
    stored = queue.enqueue(_new(0, id="a"), now=clock.now)
    batch = [_new(1, id="b"), _new(2, id="a"), _new(3, id="c"), _new(4, id="b")]
    events = queue.enqueue_many(batch, now=clock.now)
    assert [e.id for e in events] == ["b", "a", "c", "b"]
    assert events[1] == stored
    assert events[0] == events[3] and events[0].payload == b'{"n": 1}'
    assert queue.stats()[EventState.QUEUED] == 3
    assert queue.enqueue_many([], now=clock.now) == []


def test_delayed_event_is_invisible_until_due(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(delay_s=10.0), now=clock.now)
    assert event.not_before == clock.now + 10
    assert queue.lease("c1", limit=10, lease_s=LEASE_S, now=clock.advance(9.9)) == []
    assert [e.id for e in queue.lease("c1", limit=10, lease_s=LEASE_S, now=clock.advance(0.1))] == [
        event.id
    ]


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"max_age_s": 0.0}, {"delay_s": -1.0}, {"id": ""}]
)
def test_new_event_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _new(**kwargs)


def test_lease_validates(queue: Queue, clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        queue.lease("c1", limit=0, lease_s=LEASE_S, now=clock.now)
    with pytest.raises(ValueError):
        queue.lease("c1", limit=1, lease_s=0.0, now=clock.now)


# ---- lease / ack --------------------------------------------------------------


def test_lease_takes_the_oldest_visible_first(queue: Queue, clock: FakeClock) -> None:
    late = queue.enqueue(_new(0, delay_s=5.0), now=clock.now)
    first = queue.enqueue(_new(1), now=clock.now)
    second = queue.enqueue(_new(2), now=clock.advance(1))
    third = queue.enqueue(_new(3), now=clock.advance(1))
    clock.advance(10)
    got = queue.lease("c1", limit=3, lease_s=LEASE_S, now=clock.now)
    # not_before order: first (T0), second (T0+1), third (T0+2), late (T0+5).
    assert [e.id for e in got] == [first.id, second.id, third.id]
    assert [e.id for e in queue.lease("c2", limit=3, lease_s=LEASE_S, now=clock.now)] == [late.id]


def test_lease_marks_the_attempt(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    leased = _lease_one(queue, clock)
    assert leased.id == event.id
    assert leased.state is EventState.LEASED
    assert leased.attempts == 1
    assert leased.lease_owner == "c1"
    assert leased.lease_expires_at == leased.not_before == clock.now + LEASE_S
    assert queue.get(event.id) == leased


def test_leased_event_is_invisible_to_others(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock, "c1")
    assert queue.lease("c2", limit=5, lease_s=LEASE_S, now=clock.advance(LEASE_S - 0.1)) == []


def test_ack_finishes_the_event(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock)
    assert queue.ack(event.id, "c1", b'{"ok": true}', now=clock.advance(2))
    done = queue.get(event.id)
    assert done is not None
    assert done.state is EventState.SUCCEEDED
    assert done.result == b'{"ok": true}'
    assert done.finished_at == clock.now
    assert done.not_before is None and done.lease_expires_at is None
    # Finished: never visible again, and a second ack is refused.
    assert queue.lease("c2", limit=5, lease_s=LEASE_S, now=clock.advance(3600)) == []
    assert not queue.ack(event.id, "c1", b"again", now=clock.now)


def test_ack_of_unknown_or_unleased_event_is_refused(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    assert not queue.ack(event.id, "c1", None, now=clock.now)  # queued, not leased
    assert not queue.ack("no-such-id", "c1", None, now=clock.now)
    assert not queue.fail("no-such-id", "c1", BOOM, now=clock.now)
    assert not queue.extend("no-such-id", "c1", lease_s=1.0, now=clock.now)
    assert not queue.release("no-such-id", "c1", now=clock.now)


def test_ack_from_another_consumer_is_refused(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock, "c1")
    assert not queue.ack(event.id, "c2", b"x", now=clock.now)
    assert queue.ack(event.id, "c1", b"x", now=clock.now)


# ---- lease expiry and fencing ---------------------------------------------------


def test_expired_lease_makes_the_event_visible_again(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock, "c1")
    clock.advance(LEASE_S)  # the lease expires at exactly this time
    again = _lease_one(queue, clock, "c2")
    assert again.id == event.id
    assert again.attempts == 2
    assert again.lease_owner == "c2"
    assert again.last_error is not None and again.last_error.error_type == LEASE_EXPIRED
    assert "'c1'" in again.last_error.error_message


def test_stale_consumer_cannot_clobber_the_new_attempt(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock, "slow")
    clock.advance(LEASE_S + 1)
    _lease_one(queue, clock, "fast")
    assert not queue.ack(event.id, "slow", b"late", now=clock.now)
    assert not queue.fail(event.id, "slow", BOOM, now=clock.now)
    assert not queue.extend(event.id, "slow", lease_s=LEASE_S, now=clock.now)
    assert not queue.release(event.id, "slow", now=clock.now)
    current = queue.get(event.id)
    assert current is not None
    assert (current.state, current.lease_owner, current.attempts) == (EventState.LEASED, "fast", 2)
    assert queue.ack(event.id, "fast", b"ok", now=clock.now)
    done = queue.get(event.id)
    assert done is not None and done.result == b"ok"


def test_expired_lease_nobody_took_still_accepts_its_holder(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock, "c1")
    assert queue.ack(event.id, "c1", b"ok", now=clock.advance(LEASE_S * 3))
    assert queue.lease("c2", limit=1, lease_s=LEASE_S, now=clock.now) == []


def test_attempt_fences_the_same_consumer(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    first = _lease_one(queue, clock, "c1")
    clock.advance(LEASE_S)
    second = _lease_one(queue, clock, "c1")  # the same consumer takes it again
    assert (first.attempts, second.attempts) == (1, 2)
    assert not queue.fail(event.id, "c1", BOOM, now=clock.now, attempt=first.attempts)
    assert not queue.extend(event.id, "c1", lease_s=1.0, now=clock.now, attempt=first.attempts)
    assert not queue.ack(event.id, "c1", b"old", now=clock.now, attempt=first.attempts)
    assert queue.ack(event.id, "c1", b"new", now=clock.now, attempt=second.attempts)


def test_extend_keeps_the_lease(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock, "c1")
    assert queue.extend(event.id, "c1", lease_s=100.0, now=clock.advance(LEASE_S - 1))
    extended = queue.get(event.id)
    assert extended is not None and extended.lease_expires_at == clock.now + 100
    assert queue.lease("c2", limit=1, lease_s=LEASE_S, now=clock.advance(99)) == []
    assert queue.lease("c2", limit=1, lease_s=LEASE_S, now=clock.advance(1))[0].id == event.id
    with pytest.raises(ValueError):
        queue.extend(event.id, "c2", lease_s=0.0, now=clock.now)


def test_release_gives_the_event_back_without_counting(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(), now=clock.now)
    _lease_one(queue, clock, "c1")
    assert queue.release(event.id, "c1", now=clock.now, delay_s=5.0)
    back = queue.get(event.id)
    assert back is not None
    assert (back.state, back.attempts, back.not_before) == (EventState.QUEUED, 0, clock.now + 5)
    assert not queue.release(event.id, "c1", now=clock.now)  # no longer held
    assert queue.lease("c2", limit=1, lease_s=LEASE_S, now=clock.advance(4.9)) == []
    again = queue.lease("c2", limit=1, lease_s=LEASE_S, now=clock.advance(0.1))
    assert [(e.id, e.attempts) for e in again] == [(event.id, 1)]
    with pytest.raises(ValueError):
        queue.release(event.id, "c2", now=clock.now, delay_s=-1.0)


# ---- retries and dead letters -----------------------------------------------------


def test_fail_schedules_a_retry_with_backoff(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(max_attempts=4), now=clock.now)
    delays = []
    for attempt in (1, 2, 3):
        leased = _lease_one(queue, clock)
        assert leased.attempts == attempt
        assert queue.fail(event.id, "c1", BOOM, now=clock.now)
        retry = queue.get(event.id)
        assert retry is not None and retry.state is EventState.QUEUED
        assert retry.last_error == BOOM
        assert retry.not_before is not None
        delays.append(retry.not_before - clock.now)
        # Invisible until the backoff is over, visible right then.
        assert queue.lease("c1", limit=1, lease_s=LEASE_S, now=clock.now + delays[-1] - 0.01) == []
        clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0]  # 0.5 * 2 * 2**(n-1)


def test_max_attempts_sends_to_dead_letters(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(max_attempts=2), now=clock.now)
    _lease_one(queue, clock)
    assert queue.fail(event.id, "c1", FunctionError("E1", "first"), now=clock.now)
    clock.advance(60)
    _lease_one(queue, clock)
    assert queue.fail(event.id, "c1", BOOM, now=clock.now)
    dead = queue.get(event.id)
    assert dead is not None
    assert dead.state is EventState.DEAD
    assert dead.dead_reason is DeadReason.ATTEMPTS_EXHAUSTED
    assert dead.last_error == BOOM  # the last failure, stack trace included
    assert (dead.attempts, dead.finished_at, dead.not_before) == (2, clock.now, None)
    assert queue.dead_letters("ns", "fn") == [dead]
    assert queue.lease("c1", limit=1, lease_s=LEASE_S, now=clock.advance(3600)) == []


def test_single_attempt_event_dies_on_first_failure(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(max_attempts=1), now=clock.now)
    _lease_one(queue, clock)
    assert queue.fail(event.id, "c1", BOOM, now=clock.now)
    dead = queue.get(event.id)
    assert dead is not None and dead.dead_reason is DeadReason.ATTEMPTS_EXHAUSTED


def test_failure_after_max_age_sends_to_dead_letters(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(max_age_s=60.0), now=clock.now)
    _lease_one(queue, clock)
    assert queue.fail(event.id, "c1", BOOM, now=clock.advance(60))
    dead = queue.get(event.id)
    assert dead is not None
    assert (dead.state, dead.dead_reason) == (EventState.DEAD, DeadReason.AGE_EXCEEDED)
    assert dead.attempts == 1


def test_too_old_event_is_dead_lettered_instead_of_leased(queue: Queue, clock: FakeClock) -> None:
    old = queue.enqueue(_new(0, max_age_s=10.0), now=clock.now)
    young = [queue.enqueue(_new(n), now=clock.advance(1)) for n in (1, 2)]
    clock.advance(20)
    got = queue.lease("c1", limit=2, lease_s=LEASE_S, now=clock.now)
    # The old event does not use up the limit: both young ones are delivered.
    assert [e.id for e in got] == [e.id for e in young]
    dead = queue.get(old.id)
    assert dead is not None
    assert (dead.state, dead.dead_reason, dead.attempts) == (
        EventState.DEAD,
        DeadReason.AGE_EXCEEDED,
        0,
    )


def test_expired_last_attempt_is_dead_lettered(queue: Queue, clock: FakeClock) -> None:
    event = queue.enqueue(_new(max_attempts=1), now=clock.now)
    _lease_one(queue, clock, "crashed")
    assert queue.lease("c2", limit=1, lease_s=LEASE_S, now=clock.advance(LEASE_S)) == []
    dead = queue.get(event.id)
    assert dead is not None
    assert (dead.state, dead.dead_reason) == (EventState.DEAD, DeadReason.ATTEMPTS_EXHAUSTED)
    assert dead.last_error is not None and dead.last_error.error_type == LEASE_EXPIRED


def test_dead_letters_filter_order_and_limit(queue: Queue, clock: FakeClock) -> None:
    specs = [("a", "f"), ("a", "g"), ("b", "f"), ("a", "f")]
    ids = []
    for ns, fn in specs:
        event = queue.enqueue(_new(namespace=ns, function=fn, max_attempts=1), now=clock.now)
        _lease_one(queue, clock)
        queue.fail(event.id, "c1", BOOM, now=clock.advance(1))
        ids.append(event.id)
    assert [e.id for e in queue.dead_letters()] == ids
    assert [e.id for e in queue.dead_letters("a")] == [ids[0], ids[1], ids[3]]
    assert [e.id for e in queue.dead_letters("a", "f")] == [ids[0], ids[3]]
    assert [e.id for e in queue.dead_letters(function="f")] == [ids[0], ids[2], ids[3]]
    assert [e.id for e in queue.dead_letters("a", limit=1)] == [ids[0]]
    assert queue.dead_letters("zzz") == []


# ---- redrive ----------------------------------------------------------------------


def _kill(queue: Queue, clock: FakeClock, **kwargs: Any) -> Event:
    event = queue.enqueue(_new(max_attempts=1, **kwargs), now=clock.now)
    _lease_one(queue, clock)
    assert queue.fail(event.id, "c1", BOOM, now=clock.now)
    clock.advance(1)  # dead letters are listed by time of death
    return event


def test_redrive_by_ids_queues_fresh_events(queue: Queue, clock: FakeClock) -> None:
    dead = _kill(queue, clock, max_age_s=100.0)
    other = _kill(queue, clock)
    live = queue.enqueue(_new(), now=clock.now)
    clock.advance(500)  # older than its max age: only a fresh age lets it run
    assert queue.redrive(event_ids=[dead.id, live.id, "unknown", dead.id], now=clock.now) == 1
    fresh = queue.get(dead.id)
    assert fresh is not None
    assert fresh.state is EventState.QUEUED
    assert (fresh.attempts, fresh.queued_at, fresh.not_before) == (0, clock.now, clock.now)
    assert fresh.created_at == dead.created_at and fresh.payload == dead.payload
    assert fresh.last_error == BOOM  # kept for the record
    assert (fresh.dead_reason, fresh.finished_at, fresh.result) == (None, None, None)
    assert [e.id for e in queue.dead_letters()] == [other.id]
    got = queue.lease("c2", limit=5, lease_s=LEASE_S, now=clock.now)
    assert [e.id for e in got] == [live.id, dead.id]
    assert got[1].attempts == 1


def test_redrive_by_filter(queue: Queue, clock: FakeClock) -> None:
    a1 = _kill(queue, clock, namespace="a", function="f")
    a2 = _kill(queue, clock, namespace="a", function="g")
    b1 = _kill(queue, clock, namespace="b", function="f")
    assert queue.redrive(namespace="a", function="g", now=clock.now) == 1
    assert [e.id for e in queue.dead_letters()] == [a1.id, b1.id]
    assert queue.redrive(now=clock.now, limit=1) == 1
    assert [e.id for e in queue.dead_letters()] == [b1.id]
    assert queue.redrive(now=clock.now) == 1
    assert queue.redrive(now=clock.now) == 0
    assert queue.stats()[EventState.QUEUED] == 3
    assert a2.id in {e.id for e in queue.lease("c", limit=5, lease_s=LEASE_S, now=clock.now)}


# ---- stats and housekeeping ---------------------------------------------------------


def test_stats_counts_every_state(queue: Queue, clock: FakeClock) -> None:
    assert queue.stats() == dict.fromkeys(EventState, 0)
    events = [queue.enqueue(_new(n, max_attempts=1), now=clock.now) for n in range(6)]
    queue.lease("c1", limit=3, lease_s=LEASE_S, now=clock.now)
    queue.ack(events[0].id, "c1", None, now=clock.now)
    queue.fail(events[1].id, "c1", BOOM, now=clock.now)
    assert queue.stats() == {
        EventState.QUEUED: 3,
        EventState.LEASED: 1,
        EventState.SUCCEEDED: 1,
        EventState.DEAD: 1,
    }


def test_purge_succeeded_deletes_only_old_successes(queue: Queue, clock: FakeClock) -> None:
    done = []
    for n in range(5):
        event = queue.enqueue(_new(n), now=clock.now)
        _lease_one(queue, clock)
        queue.ack(event.id, "c1", b"r", now=clock.advance(10))
        done.append(event)
    dead = _kill(queue, clock)
    waiting = queue.enqueue(_new(), now=clock.now)
    boundary = done[3].id  # finished at T0 + 40 exactly: kept; the three before it go
    assert queue.purge_succeeded(T0 + 40, limit=2) == 2
    assert queue.purge_succeeded(T0 + 40) == 1
    assert queue.purge_succeeded(T0 + 40) == 0
    assert [queue.get(e.id) is None for e in done] == [True, True, True, False, False]
    assert queue.get(boundary) is not None
    assert queue.get(dead.id) is not None and queue.get(waiting.id) is not None


# ---- the SQLite file --------------------------------------------------------------------


def test_events_survive_reopening(tmp_path: Path, clock: FakeClock) -> None:
    q = _sqlite(tmp_path)
    event = q.enqueue(_new(), now=clock.now)
    leased = _lease_one(q, clock)
    q.close()
    reopened = _sqlite(tmp_path)
    try:
        assert reopened.get(event.id) == leased
        assert reopened.ack(event.id, "c1", b"ok", now=clock.now)
    finally:
        reopened.close()


def test_database_is_in_wal_mode_with_its_indexes(tmp_path: Path) -> None:
    _sqlite(tmp_path).close()
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM events WHERE not_before <= ? "
            "ORDER BY not_before, created_at LIMIT ?",
            (T0, 10),
        ).fetchall()
    conn.close()
    # One range scan of the partial index, in order: no table scan, no sort.
    assert any("USING INDEX ix_events_visible" in row[-1] for row in plan), plan
    assert not any("TEMP B-TREE" in row[-1] for row in plan), plan


def test_synchronous_setting_is_applied(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "queue.db", synchronous="FULL")
    try:
        with q._read() as conn:  # the setting is per connection: ask one of the queue's own
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        q.close()
    with pytest.raises(ValueError):
        SqliteQueue(tmp_path / "other.db", synchronous="OFF")  # type: ignore[arg-type]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    _sqlite(tmp_path).close()
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        conn.execute("INSERT INTO schema_info (version) VALUES (99)")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        _sqlite(tmp_path)


def test_forget_function_deletes_its_events_in_every_state(queue: Queue, clock: FakeClock) -> None:
    mine = [queue.enqueue(_new(i), now=clock.now) for i in range(3)]
    other = queue.enqueue(_new(9, function="other"), now=clock.now)
    leased = queue.lease("c1", limit=1, lease_s=30, now=clock.now)
    assert len(leased) == 1
    assert queue.forget_function("ns", "fn") == 3
    assert all(queue.get(e.id) is None for e in mine)
    assert queue.get(other.id) is not None
    # The consumer that held one finds it gone, and nothing breaks.
    assert queue.ack(leased[0].id, "c1", b"null", now=clock.now) is False
    assert queue.forget_function("ns", "fn") == 0
