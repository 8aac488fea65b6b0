"""The durable queue interface and its types. Backends: ``sqlite`` (default); PostgreSQL later.

Life of an event::

    enqueue ──► QUEUED ──lease──► LEASED ──ack──► SUCCEEDED ──purge_succeeded──► deleted
    LEASED ──fail, attempts and age left──► QUEUED   (visible again after a backoff)
    LEASED ──release──► QUEUED                       (the attempt is not counted)
    LEASED, lease expired ──lease──► LEASED          (the next attempt, any consumer)
    LEASED ──fail or lease: attempts used up──► DEAD
    QUEUED or LEASED ──fail or lease: too old──► DEAD
    DEAD ──redrive──► QUEUED                         (attempts 0, age counted anew)

Delivery is at least once: an event whose consumer goes silent becomes visible
again when its lease expires and is leased anew (the function sees the same
``id``, its de-duplication key). Each lease counts one attempt.

Fencing: ``ack``, ``fail``, ``release`` and ``extend`` succeed only while the
event is leased by ``consumer_id`` (and, when ``attempt`` is given, is still in
that attempt). Once another consumer has taken an expired lease, the old
consumer's calls return False, so a slow consumer cannot clobber a newer
attempt. An expired lease nobody took yet still accepts its holder's calls.

Times are wall-clock seconds since the epoch (``time.time()``), passed in as
``now``: they are stored and compared across restarts, so a monotonic clock
would not do. Methods are synchronous, thread-safe and short; async callers run
them with ``asyncio.to_thread``. Every write is one transaction.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nimbus.domain.invocation import FunctionError
from nimbus.queue.policy import DEFAULT_MAX_AGE_S, DEFAULT_MAX_ATTEMPTS, DeadReason


class EventState(enum.StrEnum):
    QUEUED = "queued"  # waiting; leasable once not_before <= now
    LEASED = "leased"  # held by lease_owner until not_before, then leasable again
    SUCCEEDED = "succeeded"  # acked; result kept until purge_succeeded
    DEAD = "dead"  # in dead letters (see dead_reason) until redriven


def new_event_id() -> str:
    """A fresh event id (uuid4, the de-duplication id the function sees)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class NewEvent:
    """What to enqueue. ``id`` makes enqueueing idempotent: while an event with that id
    is stored (a succeeded one until ``purge_succeeded``), enqueueing it again returns the
    stored event unchanged."""

    namespace: str
    function: str
    payload: bytes
    #: Version or alias to invoke; None for the function's default ($LATEST).
    qualifier: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_age_s: float = DEFAULT_MAX_AGE_S
    #: First visible this many seconds after enqueueing.
    delay_s: float = 0.0
    id: str = field(default_factory=new_event_id)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not self.max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {self.max_age_s}")
        if not self.delay_s >= 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")
        if not self.id:
            raise ValueError("id must not be empty")


@dataclass(frozen=True)
class Event:
    """One stored asynchronous invocation."""

    id: str
    namespace: str
    function: str
    qualifier: str | None
    payload: bytes
    #: When it was first enqueued (kept across redrives).
    created_at: float
    #: When it last entered the queue (enqueue or redrive); max_age_s counts from here.
    queued_at: float
    #: Attempts counted so far; while leased, the number of the running attempt (1-based).
    attempts: int
    max_attempts: int
    max_age_s: float
    state: EventState
    #: Next time it is visible to ``lease``: the scheduled time while QUEUED, the lease
    #: expiry while LEASED, None once SUCCEEDED or DEAD.
    not_before: float | None
    #: The consumer that holds (LEASED) or last held the lease.
    lease_owner: str | None
    #: The most recent failure, kept through retries and redrives.
    last_error: FunctionError | None
    #: What the function returned (SUCCEEDED only).
    result: bytes | None
    #: Why it is in dead letters (DEAD only).
    dead_reason: DeadReason | None
    #: When it reached SUCCEEDED or DEAD.
    finished_at: float | None

    @property
    def lease_expires_at(self) -> float | None:
        """While LEASED, when the lease expires; else None."""
        return self.not_before if self.state is EventState.LEASED else None


class Queue(Protocol):
    def enqueue(self, new: NewEvent, *, now: float) -> Event:
        """Store one event, QUEUED and visible from ``now + new.delay_s``; returns it (or the
        stored event with the same id, unchanged)."""

    def enqueue_many(self, new: Sequence[NewEvent], *, now: float) -> list[Event]:
        """``enqueue`` for several events in one transaction; returns them in order."""

    def lease(self, consumer_id: str, *, limit: int, lease_s: float, now: float) -> list[Event]:
        """Atomically take up to ``limit`` visible events (QUEUED with not_before <= now, or
        LEASED with an expired lease), oldest not_before first, for ``lease_s`` seconds.

        Each counts one more attempt. An event too old, or whose expired lease was its last
        attempt, goes to dead letters instead of being returned. Two consumers never hold
        the same event at once."""

    def ack(
        self,
        event_id: str,
        consumer_id: str,
        result: bytes | None,
        *,
        now: float,
        attempt: int | None = None,
    ) -> bool:
        """Mark a leased event SUCCEEDED with ``result``; False when not held (see fencing)."""

    def fail(
        self,
        event_id: str,
        consumer_id: str,
        error: FunctionError,
        *,
        now: float,
        attempt: int | None = None,
    ) -> bool:
        """Record a failed attempt: QUEUED again after a backoff, or DEAD when attempts or
        age are used up (``policy.retry_decision``); False when not held."""

    def release(
        self,
        event_id: str,
        consumer_id: str,
        *,
        now: float,
        delay_s: float = 0.0,
        attempt: int | None = None,
    ) -> bool:
        """Give a leased event back unprocessed (throttled, shutting down): QUEUED, visible
        at ``now + delay_s``, and the attempt is not counted; False when not held."""

    def extend(
        self,
        event_id: str,
        consumer_id: str,
        *,
        lease_s: float,
        now: float,
        attempt: int | None = None,
    ) -> bool:
        """Keep holding a leased event until ``now + lease_s``; False when not held."""

    def get(self, event_id: str) -> Event | None:
        """The event (any state), or None."""

    def dead_letters(
        self, namespace: str | None = None, function: str | None = None, *, limit: int = 100
    ) -> list[Event]:
        """DEAD events of a namespace / function (None: any), oldest death first."""

    def redrive(
        self,
        *,
        now: float,
        event_ids: Sequence[str] | None = None,
        namespace: str | None = None,
        function: str | None = None,
        limit: int = 1000,
    ) -> int:
        """Put dead letters back as fresh QUEUED events (attempts 0, max age counted from
        ``now``; id, payload and last_error kept): those in ``event_ids`` when given, else up
        to ``limit`` oldest matching namespace / function. Returns how many; non-DEAD ids
        are skipped."""

    def stats(self) -> dict[EventState, int]:
        """Number of events in each state (every state present)."""

    def purge_succeeded(self, older_than: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` SUCCEEDED events finished before ``older_than``; returns
        how many (call again while it returns ``limit``)."""

    def forget_function(self, namespace: str, function: str) -> int:
        """Delete every event of a function, in any state (it was deleted: its events must
        not run against, or show up for, a new function of the same name)."""

    def close(self) -> None:
        """Release connections; the queue is unusable afterwards."""
