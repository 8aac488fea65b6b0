"""Pure queue decisions: when to retry a failed event, and when it goes to dead letters.

No I/O, no clock and no random source of their own: state, ``now`` and a random
number come in, a decision goes out, so they are unit-tested without sleeps.
Times are wall-clock seconds (``time.time()``): they are stored and compared
across restarts.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from nimbus.domain.invocation import FunctionError

#: Attempts of an event unless the enqueuer says otherwise: the first one and two retries
#: (AWS Lambda's default for asynchronous invocations).
DEFAULT_MAX_ATTEMPTS = 3
#: Maximum age of an event unless the enqueuer says otherwise: 6 hours (Lambda's default).
DEFAULT_MAX_AGE_S = 6 * 3600.0
#: Error type recorded when a consumer neither acked nor failed before its lease expired.
LEASE_EXPIRED = "Queue.LeaseExpired"


class DeadReason(enum.StrEnum):
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # the last allowed attempt failed or timed out
    AGE_EXCEEDED = "age_exceeded"  # max_age_s passed before an attempt succeeded


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of retries: attempt ``n`` waits up to ``min(cap_s, base_s * 2**(n-1))``."""

    base_s: float = 5.0
    cap_s: float = 300.0

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.cap_s >= self.base_s):
            raise ValueError(f"need 0 < base_s <= cap_s, got {self.base_s}, {self.cap_s}")


@dataclass(frozen=True)
class Retry:
    """Queue the event again; it is visible from ``not_before``."""

    not_before: float


@dataclass(frozen=True)
class DeadLetter:
    """Stop trying: move the event to dead letters."""

    reason: DeadReason


Decision = Retry | DeadLetter


def retry_delay(attempt: int, base_s: float, cap_s: float, rand: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential backoff with
    full jitter, ``rand * min(cap_s, base_s * 2**(attempt-1))``, ``rand`` uniform in [0, 1)."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    # Past 2**64 the cap has long won; bounding the exponent avoids float overflow.
    ceiling = min(cap_s, base_s * math.ldexp(1.0, min(attempt - 1, 64)))
    return rand * ceiling


def age_exceeded(*, queued_at: float, max_age_s: float, now: float) -> bool:
    """Whether an event queued at ``queued_at`` is too old to be tried at ``now``."""
    return now - queued_at >= max_age_s


def retry_decision(
    *,
    attempts: int,
    max_attempts: int,
    queued_at: float,
    max_age_s: float,
    now: float,
    policy: RetryPolicy,
    rand: float,
) -> Decision:
    """After attempt number ``attempts`` failed at ``now``: retry later, or dead-letter.

    Dead when the attempts are used up, when the event is already too old, or when the
    retry would only become visible after its maximum age (it could never run).
    """
    if age_exceeded(queued_at=queued_at, max_age_s=max_age_s, now=now):
        return DeadLetter(DeadReason.AGE_EXCEEDED)
    if attempts >= max_attempts:
        return DeadLetter(DeadReason.ATTEMPTS_EXHAUSTED)
    not_before = now + retry_delay(attempts, policy.base_s, policy.cap_s, rand)
    if age_exceeded(queued_at=queued_at, max_age_s=max_age_s, now=not_before):
        return DeadLetter(DeadReason.AGE_EXCEEDED)
    return Retry(not_before)


def delivery_decision(
    *, attempts: int, max_attempts: int, queued_at: float, max_age_s: float, now: float
) -> DeadReason | None:
    """When a visible event is about to be leased: None to deliver it, or why it goes to
    dead letters instead (too old, or an expired lease already used its last attempt)."""
    if age_exceeded(queued_at=queued_at, max_age_s=max_age_s, now=now):
        return DeadReason.AGE_EXCEEDED
    if attempts >= max_attempts:
        return DeadReason.ATTEMPTS_EXHAUSTED
    return None


def lease_expired_error(consumer_id: str, attempt: int) -> FunctionError:
    """The error recorded for an attempt whose consumer went silent."""
    return FunctionError(
        error_type=LEASE_EXPIRED,
        error_message=(
            f"consumer {consumer_id!r} neither acked nor failed attempt {attempt} "
            "before its lease expired"
        ),
    )
