"""Pool decisions: how many instances to start, which idle ones to release (pure, no clock)."""

from __future__ import annotations

import pytest

from nimbus.pool.policy import IdleInstance, instances_to_reap, instances_to_start

# ---- instances_to_start ------------------------------------------------------


def test_one_instance_per_waiting_call() -> None:
    assert instances_to_start(waiting=1, starting=0, total=0, max_instances=10) == 1
    assert instances_to_start(waiting=4, starting=0, total=0, max_instances=10) == 4


def test_nothing_waiting_starts_nothing() -> None:
    assert instances_to_start(waiting=0, starting=0, total=0, max_instances=10) == 0
    assert instances_to_start(waiting=0, starting=0, total=3, max_instances=10) == 0


def test_starting_instances_cover_waiters() -> None:
    assert instances_to_start(waiting=3, starting=3, total=3, max_instances=10) == 0
    assert instances_to_start(waiting=5, starting=2, total=2, max_instances=10) == 3
    # More starting than waiting (waiters gave up): never negative.
    assert instances_to_start(waiting=1, starting=4, total=4, max_instances=10) == 0


def test_cap_reached_starts_nothing() -> None:
    assert instances_to_start(waiting=6, starting=0, total=3, max_instances=3) == 0
    assert instances_to_start(waiting=6, starting=3, total=3, max_instances=3) == 0


def test_cap_limits_the_burst() -> None:
    assert instances_to_start(waiting=6, starting=0, total=0, max_instances=3) == 3
    assert instances_to_start(waiting=6, starting=1, total=2, max_instances=3) == 1


def test_over_the_cap_is_never_negative() -> None:
    # max_instances lowered below what runs: nothing new, and no negative count.
    assert instances_to_start(waiting=2, starting=0, total=5, max_instances=3) == 0


@pytest.mark.parametrize("max_instances", [1, 2, 7])
def test_single_waiter_below_cap(max_instances: int) -> None:
    assert instances_to_start(waiting=1, starting=0, total=0, max_instances=max_instances) == 1


# ---- instances_to_reap -------------------------------------------------------

KEEP = {"keepalive_s": 10.0, "last_keepalive_s": 100.0}


def test_nothing_idle_nothing_released() -> None:
    assert instances_to_reap([], total=0, now=1000.0, **KEEP) == []
    assert instances_to_reap([], total=3, now=1000.0, **KEEP) == []


def test_not_yet_expired_stays() -> None:
    idle = [IdleInstance("a", 100.0), IdleInstance("b", 105.0)]
    assert instances_to_reap(idle, total=3, now=109.9, **KEEP) == []


def test_expiry_is_inclusive_at_exactly_keepalive() -> None:
    idle = [IdleInstance("a", 100.0)]
    assert instances_to_reap(idle, total=2, now=110.0, **KEEP) == ["a"]
    assert instances_to_reap(idle, total=2, now=109.999, **KEEP) == []


def test_only_expired_ones_go() -> None:
    idle = [IdleInstance("old", 100.0), IdleInstance("fresh", 115.0)]
    assert instances_to_reap(idle, total=2, now=120.0, **KEEP) == ["old"]


def test_oldest_released_first() -> None:
    idle = [IdleInstance("mid", 50.0), IdleInstance("newest", 60.0), IdleInstance("oldest", 40.0)]
    # A busy instance exists too (total 4), so every expired idle one goes, oldest first.
    assert instances_to_reap(idle, total=4, now=200.0, **KEEP) == ["oldest", "mid", "newest"]


def test_last_instance_kept_until_last_keepalive() -> None:
    idle = [IdleInstance("only", 100.0)]
    assert instances_to_reap(idle, total=1, now=110.0, **KEEP) == []
    assert instances_to_reap(idle, total=1, now=199.9, **KEEP) == []
    assert instances_to_reap(idle, total=1, now=200.0, **KEEP) == ["only"]


def test_all_idle_keeps_the_most_recently_used() -> None:
    idle = [IdleInstance("a", 100.0), IdleInstance("c", 102.0), IdleInstance("b", 101.0)]
    # All three expired and they are the whole pool: the freshest one stays warm.
    assert instances_to_reap(idle, total=3, now=150.0, **KEEP) == ["a", "b"]
    # Past last_keepalive even the last one goes (all are past it).
    assert instances_to_reap(idle, total=3, now=202.0, **KEEP) == ["a", "b", "c"]


def test_last_kept_only_when_nothing_else_remains() -> None:
    idle = [IdleInstance("a", 100.0), IdleInstance("b", 101.0)]
    # A third instance is busy or starting: the pool keeps that one, both idle ones go.
    assert instances_to_reap(idle, total=3, now=150.0, **KEEP) == ["a", "b"]


def test_last_kept_when_a_fresh_idle_one_remains() -> None:
    # One idle instance is not expired yet: it stays anyway, so every expired one can go.
    idle = [IdleInstance("a", 100.0), IdleInstance("b", 101.0), IdleInstance("fresh", 145.0)]
    assert instances_to_reap(idle, total=3, now=150.0, **KEEP) == ["a", "b"]


def test_keepalive_equal_to_last_keepalive() -> None:
    idle = [IdleInstance("a", 0.0), IdleInstance("b", 1.0)]
    same = {"keepalive_s": 5.0, "last_keepalive_s": 5.0}
    assert instances_to_reap(idle, total=2, now=5.5, **same) == ["a"]
    assert instances_to_reap(idle, total=2, now=6.0, **same) == ["a", "b"]


def test_zero_keepalive_releases_extras_at_once() -> None:
    idle = [IdleInstance("a", 10.0), IdleInstance("b", 10.0)]
    got = instances_to_reap(idle, total=2, now=10.0, keepalive_s=0.0, last_keepalive_s=30.0)
    assert len(got) == 1 and got[0] in ("a", "b")
