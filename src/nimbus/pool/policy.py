"""Pure pool decisions: how many instances to start, which idle ones to release.

No I/O, no clock of their own: state and ``now`` come in, a decision goes out,
so they are unit-tested without processes or sleeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def instances_to_start(
    *,
    waiting: int,
    starting: int,
    total: int,
    max_instances: int,
    namespace_headroom: int | None = None,
) -> int:
    """Start one instance per waiting call not already covered by one starting, up to the
    function's cap and to the instances its namespace may still start (None: no limit)."""
    count = min(waiting - starting, max_instances - total)
    if namespace_headroom is not None:
        count = min(count, namespace_headroom)
    return max(0, count)


def instances_to_reclaim(
    *, waiting: int, starting: int, total: int, max_instances: int, stopping: int
) -> int:
    """Idle instances of *other* functions of the namespace to stop, when the namespace
    quota (not the function's own cap) keeps waiting calls from getting an instance.

    Instances already stopping count as reclaimed: they free their place soon.
    """
    short = min(waiting - starting, max_instances - total)
    return max(0, short - stopping)


@dataclass(frozen=True)
class IdleInstance:
    id: str
    idle_since: float  # monotonic seconds


def instances_to_reap(
    idle: list[IdleInstance],
    *,
    total: int,
    now: float,
    keepalive_s: float,
    last_keepalive_s: float,
) -> list[str]:
    """Idle instances to release, oldest first.

    An instance idle for ``keepalive_s`` goes, except that the pool's last
    instance is kept until it has been idle for ``last_keepalive_s`` (so a
    function called now and then stays warm without holding many instances).
    """
    expired = sorted(
        (i for i in idle if now - i.idle_since >= keepalive_s), key=lambda i: i.idle_since
    )
    if expired and len(expired) == total:
        last = expired[-1]
        if now - last.idle_since < last_keepalive_s:
            expired.pop()
    return [i.id for i in expired]


# ---- autoscaling: one decision from the pool's state and the clock ----------------------


@dataclass(frozen=True)
class ScalePolicy:
    """How a pool scales. Each instance serves one call at a time, so the signal is the
    number of calls waiting for an instance per live instance (starting ones included).

    - Scale out when waiting calls per instance exceed ``target_waiting_per_instance``:
      enough instances start to bring it back to the target, at most ``max_burst`` in
      one decision (the next decision, a moment later, may add more). The default 0
      gives each waiting call an instance of its own as soon as it waits.
    - Scale in when instances sit idle: one idle for ``keepalive_s`` is released, the
      pool's last one only after ``last_keepalive_s`` (so a function called now and
      then stays warm), and none within ``scale_in_cooldown_s`` of the last scale-out
      (a burst that comes back soon finds its instances still warm).
    - ``min_instances`` (provisioned instances) are started at once, replaced when
      they die, and never released for being idle.
    """

    keepalive_s: float
    last_keepalive_s: float
    target_waiting_per_instance: float = 0.0
    max_burst: int = 32
    scale_in_cooldown_s: float = 0.0


@dataclass(frozen=True)
class PoolStats:
    waiting: int  # calls waiting for an instance
    starting: int  # instances launched, not yet ready
    total: int  # instances counted against the caps (live and launching)
    idle: tuple[IdleInstance, ...]  # ready and free
    max_instances: int  # the pool's own cap
    headroom: int | None = None  # more instances its budgets allow (None: no limit)
    min_instances: int = 0  # provisioned
    last_scale_out: float | None = None  # monotonic time of the last start decision


@dataclass(frozen=True)
class ScaleDecision:
    start: int = 0
    stop: tuple[str, ...] = ()


def decide_scale(stats: PoolStats, now: float, policy: ScalePolicy) -> ScaleDecision:
    """What to start and what to release now: the pool's whole scaling policy."""
    wanted = stats.waiting - policy.target_waiting_per_instance * stats.total
    start = math.ceil(wanted) - stats.starting if wanted > 0 else 0
    start = min(max(0, start), policy.max_burst)
    start = max(start, stats.min_instances - stats.total)  # provisioned: all at once
    start = min(start, stats.max_instances - stats.total)
    if stats.headroom is not None:
        start = min(start, stats.headroom)
    start = max(0, start)
    if start or stats.waiting:
        return ScaleDecision(start=start)
    cooling = (
        stats.last_scale_out is not None and now - stats.last_scale_out < policy.scale_in_cooldown_s
    )
    if cooling:
        return ScaleDecision()
    stop = instances_to_reap(
        list(stats.idle),
        total=stats.total,
        now=now,
        keepalive_s=policy.keepalive_s,
        last_keepalive_s=policy.last_keepalive_s,
    )
    keep = stats.min_instances
    if keep:
        # Provisioned instances are never idle-released; extras above them are, the
        # last-instance grace does not apply (the provisioned ones stay warm).
        expired = [
            i.id
            for i in sorted(stats.idle, key=lambda i: i.idle_since)
            if now - i.idle_since >= policy.keepalive_s
        ]
        stop = expired[: max(0, stats.total - keep)]
    return ScaleDecision(stop=tuple(stop))
