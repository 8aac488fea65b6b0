"""Pure pool decisions: how many instances to start, which idle ones to release.

No I/O, no clock of their own: state and ``now`` come in, a decision goes out,
so they are unit-tested without processes or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass


def instances_to_start(*, waiting: int, starting: int, total: int, max_instances: int) -> int:
    """Start one instance per waiting call not already covered by one starting, up to the cap."""
    return max(0, min(waiting - starting, max_instances - total))


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
