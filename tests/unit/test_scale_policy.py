"""decide_scale: the pool's whole scaling policy, driven by a fake clock."""

from __future__ import annotations

from nimbus.pool.policy import IdleInstance, PoolStats, ScaleDecision, ScalePolicy, decide_scale

POLICY = ScalePolicy(keepalive_s=60, last_keepalive_s=300, max_burst=32, scale_in_cooldown_s=10)


def stats(**kw: object) -> PoolStats:
    base: dict[str, object] = {
        "waiting": 0,
        "starting": 0,
        "total": 0,
        "idle": (),
        "max_instances": 10,
    }
    base.update(kw)
    return PoolStats(**base)  # type: ignore[arg-type]


def idle(*ages: tuple[str, float]) -> tuple[IdleInstance, ...]:
    return tuple(IdleInstance(i, since) for i, since in ages)


def test_the_worked_example_of_docs_scaling() -> None:
    # 4 calls arrive at once, nothing runs: one instance each.
    assert decide_scale(stats(waiting=4), 0.0, POLICY) == ScaleDecision(start=4)
    # They are starting: the same 4 calls do not start more.
    assert decide_scale(stats(waiting=4, starting=4, total=4), 0.005, POLICY).start == 0
    # 8 more while 4 are busy: the cap (10) allows 6.
    assert decide_scale(stats(waiting=8, total=4), 0.2, POLICY).start == 6
    # At the cap: nothing to start, calls wait.
    assert decide_scale(stats(waiting=2, total=10), 0.21, POLICY) == ScaleDecision()
    ten = idle(*((f"i{n}", 0.3) for n in range(10)))
    # Idle but within the keep-alive: nothing goes.
    assert decide_scale(stats(total=10, idle=ten, last_scale_out=0.2), 59.0, POLICY).stop == ()
    # After 60 s idle: all but the last.
    out = decide_scale(stats(total=10, idle=ten, last_scale_out=0.2), 60.3, POLICY)
    assert len(out.stop) == 9
    one = idle(("i9", 0.3))
    assert decide_scale(stats(total=1, idle=one), 299.0, POLICY).stop == ()
    assert decide_scale(stats(total=1, idle=one), 300.3, POLICY).stop == ("i9",)


def test_burst_is_capped_and_later_decisions_add_more() -> None:
    policy = ScalePolicy(keepalive_s=60, last_keepalive_s=300, max_burst=5)
    assert decide_scale(stats(waiting=32, max_instances=100), 0, policy).start == 5
    assert (
        decide_scale(stats(waiting=32, starting=5, total=5, max_instances=100), 0.01, policy).start
        == 5
    )


def test_target_waiting_per_instance_queues_before_growing() -> None:
    policy = ScalePolicy(keepalive_s=60, last_keepalive_s=300, target_waiting_per_instance=2)
    # No instance at all: waiting calls always start some.
    assert decide_scale(stats(waiting=4), 0, policy).start == 4
    # 4 instances, 8 waiting: 2 per instance is the target, nothing starts.
    assert decide_scale(stats(waiting=8, total=4), 0, policy).start == 0
    # 11 waiting: 3 over the target, 3 more.
    assert decide_scale(stats(waiting=11, total=4), 0, policy).start == 3


def test_budget_headroom_limits_starts() -> None:
    assert decide_scale(stats(waiting=6, headroom=2), 0, POLICY).start == 2
    assert decide_scale(stats(waiting=6, headroom=0), 0, POLICY).start == 0


def test_cooldown_holds_releases_after_a_scale_out() -> None:
    two = idle(("a", 0.0), ("b", 0.0))
    s = stats(total=2, idle=two, last_scale_out=95.0)
    # Idle for 100 s > keep-alive, but a scale-out happened 5 s ago: nothing goes yet.
    assert decide_scale(s, 100.0, POLICY).stop == ()
    assert decide_scale(s, 105.0, POLICY).stop == ("a",)


def test_waiting_calls_block_releases() -> None:
    two = idle(("a", 0.0), ("b", 0.0))
    assert decide_scale(stats(total=2, idle=two, waiting=1), 1000, POLICY).stop == ()


def test_provisioned_instances_start_at_once_and_are_never_idle_released() -> None:
    assert decide_scale(stats(min_instances=3), 0, POLICY).start == 3
    assert decide_scale(stats(min_instances=3, total=1), 0, POLICY).start == 2  # one died
    assert decide_scale(stats(min_instances=3, total=3), 0, POLICY).start == 0
    three = idle(("a", 0.0), ("b", 1.0), ("c", 2.0))
    # Idle for ever: the provisioned three stay (no last-instance grace needed).
    assert decide_scale(stats(min_instances=3, total=3, idle=three), 10_000, POLICY).stop == ()
    # Five live, three provisioned: the two extras that idled longest go.
    five = idle(("a", 0.0), ("b", 1.0), ("c", 2.0), ("d", 3.0), ("e", 4.0))
    out = decide_scale(stats(min_instances=3, total=5, idle=five), 10_000, POLICY)
    assert out.stop == ("a", "b")
    # Provisioned instances are capped by max_instances and the budgets, like any.
    assert decide_scale(stats(min_instances=20, max_instances=10), 0, POLICY).start == 10
    assert decide_scale(stats(min_instances=5, headroom=2), 0, POLICY).start == 2
