"""Pure pool decisions: how many instances to start, which idle ones to release.

No I/O, no clock of their own: state and ``now`` come in, a decision goes out,
so they are unit-tested without processes or sleeps.
"""

from __future__ import annotations

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
