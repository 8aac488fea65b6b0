"""A namespace's instance budget, shared by the pools of its functions on this node.

``max_concurrent_instances`` caps the instances of all of a namespace's
functions together (starting, idle, busy and draining ones all count). Pools
ask for their :meth:`NamespaceBudget.headroom` before starting instances (the
pure ``instances_to_start`` takes it as an input) and, when the quota rather
than their own cap holds calls back, ask the budget to stop idle instances of
the namespace's other functions. Whenever an instance goes away or goes idle,
the budget wakes the other pools so their waiting calls get the place.
"""

from __future__ import annotations

from typing import Protocol


class BudgetMember(Protocol):
    """What a pool shows its namespace budget."""

    def occupied(self) -> int:
        """Instances that count against the quota: live ones plus those being launched."""

    def stopping(self) -> int:
        """Instances told to stop that have not exited yet."""

    def idle_since(self) -> list[tuple[float, str]]:
        """(idle since, instance id) of each idle instance that could be stopped."""

    def evict(self, instance_id: str) -> bool:
        """Stop that idle instance to free its place; False if it is no longer idle."""

    def rescale(self) -> None:
        """Start instances for waiting calls if the budget now allows."""


class NamespaceBudget:
    def __init__(self, namespace: str, limit: int | None = None) -> None:
        self.namespace = namespace
        self.limit = limit
        self._members: set[BudgetMember] = set()
        self._waking = False

    def join(self, member: BudgetMember) -> None:
        self._members.add(member)

    def leave(self, member: BudgetMember) -> None:
        self._members.discard(member)
        self.wake()

    def used(self) -> int:
        return sum(m.occupied() for m in self._members)

    def headroom(self) -> int | None:
        """Instances the namespace may still start; None when it has no limit."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.used())

    def exhausted(self) -> bool:
        return self.limit is not None and self.used() >= self.limit

    def stopping(self) -> int:
        return sum(m.stopping() for m in self._members)

    def set_limit(self, limit: int | None) -> None:
        self.limit = limit
        self.wake()

    def reclaim(self, requester: BudgetMember, count: int) -> int:
        """Stop up to ``count`` idle instances of other pools, longest idle first."""
        if count <= 0:
            return 0
        candidates = sorted(
            (since, instance_id, member)
            for member in self._members
            if member is not requester
            for since, instance_id in member.idle_since()
        )
        stopped = 0
        for _since, instance_id, member in candidates:
            if stopped >= count:
                break
            if member.evict(instance_id):
                stopped += 1
        return stopped

    def wake(self, exclude: BudgetMember | None = None) -> None:
        """A place may have freed: let the other pools start instances for waiting calls."""
        if self.limit is None or self._waking:
            return
        self._waking = True
        try:
            for member in list(self._members):
                if member is not exclude:
                    member.rescale()
        finally:
            self._waking = False


class FunctionBudget(NamespaceBudget):
    """A function's reserved concurrency: the instances of all its versions together
    (None: no reservation). Same mechanics as the namespace quota, one level down."""

    def __init__(self, function: str, limit: int | None = None) -> None:
        super().__init__(function, limit)
