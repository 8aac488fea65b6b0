"""Queue decisions: backoff with full jitter, retry or dead-letter (pure, no clock)."""

from __future__ import annotations

import random

import pytest

from nimbus.queue.policy import (
    LEASE_EXPIRED,
    DeadLetter,
    DeadReason,
    Retry,
    RetryPolicy,
    delivery_decision,
    lease_expired_error,
    retry_decision,
    retry_delay,
)

# ---- retry_delay --------------------------------------------------------------


def test_delay_ceiling_doubles_per_attempt() -> None:
    # rand just below 1 shows the ceiling of each attempt: base, 2*base, 4*base...
    top = 1 - 1e-12
    ceilings = [retry_delay(n, 2.0, 1000.0, top) for n in range(1, 6)]
    assert ceilings == pytest.approx([2.0, 4.0, 8.0, 16.0, 32.0])


def test_delay_is_capped() -> None:
    top = 1 - 1e-12
    assert retry_delay(10, 2.0, 60.0, top) == pytest.approx(60.0)
    assert retry_delay(6, 2.0, 60.0, top) == pytest.approx(60.0)  # 2 * 32 = 64 > 60
    assert retry_delay(5, 2.0, 60.0, top) == pytest.approx(32.0)


def test_huge_attempt_does_not_overflow() -> None:
    assert retry_delay(10_000, 1.0, 300.0, 0.5) == pytest.approx(150.0)


def test_full_jitter_spans_zero_to_ceiling() -> None:
    assert retry_delay(3, 1.0, 100.0, 0.0) == 0.0
    assert retry_delay(3, 1.0, 100.0, 0.5) == pytest.approx(2.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, 0.5, 30.0, rng.random()) for _ in range(500)]
        assert all(0.0 <= d < ceiling for d in delays)
        # Full jitter really spreads: both halves of the range are used.
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.5), (-1, 0.5), (1, 1.0), (1, -0.1)])
def test_delay_rejects_bad_input(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError):
        retry_delay(attempt, 1.0, 10.0, rand)


def test_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base_s=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_s=10, cap_s=5)
    assert RetryPolicy(base_s=5, cap_s=5).cap_s == 5


# ---- retry_decision -----------------------------------------------------------

POLICY = RetryPolicy(base_s=4.0, cap_s=100.0)


def _decide(*, attempts: int, now: float, max_attempts: int = 3, rand: float = 0.5) -> object:
    return retry_decision(
        attempts=attempts,
        max_attempts=max_attempts,
        queued_at=1000.0,
        max_age_s=600.0,
        now=now,
        policy=POLICY,
        rand=rand,
    )


def test_failure_with_attempts_left_retries_after_backoff() -> None:
    assert _decide(attempts=1, now=1010.0) == Retry(not_before=1012.0)  # 0.5 * 4
    assert _decide(attempts=2, now=1010.0) == Retry(not_before=1014.0)  # 0.5 * 8
    assert _decide(attempts=2, now=1010.0, rand=0.0) == Retry(not_before=1010.0)


def test_last_attempt_goes_to_dead_letters() -> None:
    assert _decide(attempts=3, now=1010.0) == DeadLetter(DeadReason.ATTEMPTS_EXHAUSTED)
    assert _decide(attempts=1, now=1010.0, max_attempts=1) == DeadLetter(
        DeadReason.ATTEMPTS_EXHAUSTED
    )


def test_too_old_goes_to_dead_letters_even_with_attempts_left() -> None:
    assert _decide(attempts=1, now=1600.0) == DeadLetter(DeadReason.AGE_EXCEEDED)
    assert _decide(attempts=1, now=5000.0) == DeadLetter(DeadReason.AGE_EXCEEDED)


def test_retry_that_would_land_past_max_age_is_dead_now() -> None:
    # 1599 + 0.5 * 4 = 1601 > 1000 + 600: the retry could never run.
    assert _decide(attempts=1, now=1599.0) == DeadLetter(DeadReason.AGE_EXCEEDED)
    # With no jitter delay it still fits.
    assert _decide(attempts=1, now=1599.0, rand=0.0) == Retry(not_before=1599.0)


# ---- delivery_decision --------------------------------------------------------


def _deliver(*, attempts: int, now: float) -> DeadReason | None:
    return delivery_decision(
        attempts=attempts, max_attempts=3, queued_at=0.0, max_age_s=60.0, now=now
    )


def test_delivery() -> None:
    assert _deliver(attempts=0, now=10.0) is None
    assert _deliver(attempts=2, now=59.9) is None
    assert _deliver(attempts=0, now=60.0) is DeadReason.AGE_EXCEEDED
    # Only an expired lease can leave a visible event with no attempt left.
    assert _deliver(attempts=3, now=10.0) is DeadReason.ATTEMPTS_EXHAUSTED


def test_lease_expired_error_names_the_consumer() -> None:
    error = lease_expired_error("worker-7", 2)
    assert error.error_type == LEASE_EXPIRED
    assert "worker-7" in error.error_message
    assert "attempt 2" in error.error_message
