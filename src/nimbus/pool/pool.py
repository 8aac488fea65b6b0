"""The instances of one function revision: cold starts, warm reuse, waiting, release.

Calls lease an instance (``async with pool.lease() as instance``). A free
instance is used at once (the most recently used, so extras can go idle and
be released); otherwise the call waits in a bounded FIFO queue and, if no
instance covers it yet, one is started, up to the function's maximum. A call
that waits longer than the queue timeout, or finds the queue full, is
throttled. When a new revision replaces this one the pool drains: idle
instances stop at once, busy ones once their call is done.

The pools of one namespace share a :class:`NamespaceBudget`: its quota on
concurrent instances is a second cap next to the function's own; a call held
back by it waits the same way and, if no place frees in time, is refused with
``Quota.ConcurrencyExceeded``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from nimbus.config import Settings
from nimbus.domain.function import FunctionConfig
from nimbus.errors import ConcurrencyQuotaError, ReservedConcurrencyError, ThrottledError
from nimbus.pool.budget import FunctionBudget, NamespaceBudget
from nimbus.pool.instance import InitFailed, Instance, InstanceState
from nimbus.pool.policy import (
    IdleInstance,
    PoolStats,
    ScalePolicy,
    decide_scale,
    instances_to_reclaim,
)

log = logging.getLogger("nimbus.pool")

#: Starts an instance of a config (process launched, not yet ready).
Launcher = Callable[[FunctionConfig, Callable[[Instance], None]], Awaitable[Instance]]


class PoolRetired(Exception):
    """The pool drained while a call queued in it; the call goes to the current pool."""


class Pool:
    def __init__(
        self,
        config: FunctionConfig,
        settings: Settings,
        launcher: Launcher,
        on_empty: Callable[[Pool], None],
        budget: NamespaceBudget | None = None,
        function_budget: FunctionBudget | None = None,
    ) -> None:
        self.config = config
        self._settings = settings
        self._launcher = launcher
        self._on_empty = on_empty
        self._budget = budget or NamespaceBudget(config.namespace)
        self._function_budget = function_budget or FunctionBudget(config.name)
        #: The function's reserved concurrency first, then the namespace quota.
        self._budgets: tuple[NamespaceBudget, ...] = (self._function_budget, self._budget)
        self._policy = ScalePolicy(
            keepalive_s=settings.keepalive_s,
            last_keepalive_s=settings.last_keepalive_s,
            target_waiting_per_instance=settings.scale_target_waiting,
            max_burst=settings.scale_max_burst,
            scale_in_cooldown_s=settings.scale_in_cooldown_s,
        )
        #: Provisioned instances: kept initialised whatever the traffic.
        self.min_instances = 0
        self._last_scale_out: float | None = None
        self.instances: dict[str, Instance] = {}
        self._idle: list[Instance] = []  # stack: last is the most recently used
        self._waiters: collections.deque[asyncio.Future[Instance]] = collections.deque()
        self._starting = 0
        self._launching = 0  # starts not yet in self.instances; they count toward the cap
        self.draining = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop = asyncio.get_running_loop()
        for budget in self._budgets:
            budget.join(self)

    @property
    def max_instances(self) -> int:
        return self.config.max_instances or self._settings.max_instances

    def stats(self) -> dict[str, int]:
        busy = sum(1 for i in self.instances.values() if i.state is InstanceState.BUSY)
        return {
            "instances": len(self.instances),
            "idle": len(self._idle),
            "busy": busy,
            "starting": self._starting,
            "waiting": len(self._waiters),
            "provisioned": self.min_instances,
        }

    def ready_count(self) -> int:
        """Initialised instances able to take a call (idle or busy)."""
        return sum(1 for i in self.instances.values() if i.usable)

    def set_min_instances(self, count: int) -> None:
        self.min_instances = max(0, count)
        self._scale()

    # ---- leasing -----------------------------------------------------------
    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Instance]:
        instance = self._take_idle() or await self._wait_for_instance()
        try:
            yield instance
        finally:
            self._release(instance)

    def _take_idle(self) -> Instance | None:
        while self._idle:
            instance = self._idle.pop()
            if instance.usable:
                instance.state = InstanceState.BUSY
                return instance
        return None

    async def _wait_for_instance(self) -> Instance:
        if len(self._waiters) >= self._settings.max_queued:
            raise ThrottledError(
                f"function {self.config.name!r} has {self.max_instances} busy instances and "
                f"{len(self._waiters)} calls waiting; retry later or raise max_instances",
                retry_after_s=1,
            )
        waiter: asyncio.Future[Instance] = self._loop.create_future()
        self._waiters.append(waiter)
        timer = self._loop.call_later(self._settings.queue_timeout_s, self._expire, waiter)
        self._scale()
        try:
            return await waiter
        except asyncio.CancelledError:
            # The caller went away; an instance already handed over goes back.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            # (Not remove() under suppress(ValueError): its message reprs the future,
            # which cost every queued call more than the rest of this method.)
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _expire(self, waiter: asyncio.Future[Instance]) -> None:
        if waiter.done():
            return
        # A call covered by an instance still starting waits for it: its start has its
        # own limit (init_timeout_s); the queue timeout is for waiting on busy instances.
        pending = [w for w in self._waiters if not w.done()]
        if waiter in pending and pending.index(waiter) < self._starting:
            self._loop.call_later(self._settings.queue_timeout_s, self._expire, waiter)
            return
        holder = self._holding_budget()
        if holder is self._function_budget:
            waiter.set_exception(
                ReservedConcurrencyError(
                    f"function {self.config.name!r} runs its reserved concurrency of "
                    f"{holder.limit} instances and none became free within "
                    f"{self._settings.queue_timeout_s:g} s; retry later or raise it "
                    f"(`nimbus concurrency set {self.config.name} N`)",
                    retry_after_s=1,
                    limit=holder.limit,
                )
            )
        elif holder is self._budget:
            waiter.set_exception(
                ConcurrencyQuotaError(
                    f"namespace {self.config.namespace!r} runs {self._budget.used()} instances, "
                    f"its quota max_concurrent_instances={self._budget.limit}, and none became "
                    f"free within {self._settings.queue_timeout_s:g} s; retry later, or ask an "
                    "admin to raise the quota (`nimbus namespace update "
                    f"{self.config.namespace} --max-concurrent-instances N`)",
                    retry_after_s=1,
                    quota="max_concurrent_instances",
                    limit=self._budget.limit,
                )
            )
        else:
            waiter.set_exception(
                ThrottledError(
                    f"no instance of {self.config.name!r} became free within "
                    f"{self._settings.queue_timeout_s:g} s (max_instances={self.max_instances}); "
                    "retry later or raise max_instances",
                    retry_after_s=1,
                )
            )

    def _holding_budget(self) -> NamespaceBudget | None:
        """Below the pool's own cap, the budget (reserved concurrency, then the namespace
        quota) that has no place left, if any."""
        if self.occupied() >= self.max_instances:
            return None
        for budget in self._budgets:
            if budget.exhausted():
                return budget
        return None

    def _headroom(self) -> int | None:
        rooms = [r for r in (b.headroom() for b in self._budgets) if r is not None]
        return min(rooms) if rooms else None

    def _wake_budgets(self) -> None:
        for budget in self._budgets:
            budget.wake(exclude=self)

    def _release(self, instance: Instance) -> None:
        if instance.state is InstanceState.BUSY and not instance.stopping:
            instance.state = InstanceState.IDLE
        if instance.usable:
            self._offer(instance)
        else:
            self._scale()

    def _offer(self, instance: Instance) -> None:
        """A ready instance: to the first waiting call, else onto the idle stack."""
        if self.draining:
            instance.stop()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                instance.state = InstanceState.BUSY
                waiter.set_result(instance)
                return
        instance.idle_since = time.monotonic()
        self._idle.append(instance)
        for budget in self._budgets:
            if budget.exhausted():
                budget.wake(exclude=self)  # another pool may be waiting for this place

    # ---- scaling -----------------------------------------------------------
    def _scale(self) -> None:
        if self.draining:
            return
        pending = sum(1 for w in self._waiters if not w.done())
        total = self.occupied()
        headroom = self._headroom()
        now = time.monotonic()
        count = decide_scale(
            PoolStats(
                waiting=pending,
                starting=self._starting,
                total=total,
                idle=(),
                max_instances=self.max_instances,
                headroom=headroom,
                min_instances=self.min_instances,
                last_scale_out=self._last_scale_out,
            ),
            now,
            self._policy,
        ).start
        if headroom is not None and count < pending - self._starting:
            # A budget holds calls back: free idle places of the other pools sharing it
            # (other versions of the function, other functions of the namespace).
            short = instances_to_reclaim(
                waiting=pending - count,
                starting=self._starting,
                total=total + count,
                max_instances=self.max_instances,
                stopping=0,
            )
            for budget in self._budgets:
                room = budget.headroom()
                if room is not None and room <= count:
                    budget.reclaim(self, max(0, short - budget.stopping()))
        if count:
            self._last_scale_out = now
        self._launch_n(count)

    def prewarm(self) -> None:
        """Start one instance ahead of the first call, unless there is one already."""
        if not self.draining and self.occupied() == 0:
            self._launch_n(1)

    def _launch_n(self, count: int) -> None:
        for _ in range(count):
            self._starting += 1
            self._launching += 1
            task = asyncio.ensure_future(self._start_one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_one(self) -> None:
        try:
            try:
                instance = await self._launcher(self.config, self._on_instance_dead)
            finally:
                self._launching -= 1
            self.instances[instance.id] = instance
            await instance.ready()
        except InitFailed as exc:
            self._starting -= 1
            self._fail_one_waiter(exc)
            return
        except Exception as exc:  # the launcher itself broke: report, never hang callers
            log.exception("starting an instance of %s failed", self.config.name)
            self._starting -= 1
            self._wake_budgets()
            from nimbus.domain.invocation import FunctionError

            self._fail_one_waiter(InitFailed(FunctionError("Runtime.StartError", str(exc)), 0, ""))
            return
        self._starting -= 1
        self._offer(instance)

    def _fail_one_waiter(self, exc: InitFailed) -> None:
        """An init failure goes to one waiting call: one start per call, no retry storm."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
                break
        self._scale()

    def _on_instance_dead(self, instance: Instance) -> None:
        self.instances.pop(instance.id, None)
        if instance in self._idle:
            self._idle.remove(instance)
        if self.draining and not self.instances and self._starting == 0:
            self._empty()
        else:
            self._scale()
        self._wake_budgets()

    def _empty(self) -> None:
        for budget in self._budgets:
            budget.leave(self)
        self._on_empty(self)

    # ---- namespace budget (see nimbus.pool.budget) ----------------------------
    def occupied(self) -> int:
        return len(self.instances) + self._launching

    def stopping(self) -> int:
        return sum(1 for i in self.instances.values() if i.stopping)

    def idle_since(self) -> list[tuple[float, str]]:
        return [(i.idle_since, i.id) for i in self._idle if i.usable]

    def evict(self, instance_id: str) -> bool:
        instance = self.instances.get(instance_id)
        if instance is None or instance not in self._idle or not instance.usable:
            return False
        self._idle.remove(instance)
        instance.stop()
        return True

    def rescale(self) -> None:
        if self._waiters or self.occupied() < self.min_instances:
            self._scale()

    # ---- release -----------------------------------------------------------
    def reap(self, now: float) -> int:
        if self.draining:
            return 0
        if self.occupied() < self.min_instances:
            self._scale()  # a provisioned instance died or could not start: replace it
        decision = decide_scale(
            PoolStats(
                waiting=sum(1 for w in self._waiters if not w.done()),
                starting=self._starting,
                total=sum(1 for i in self.instances.values() if not i.stopping),
                idle=tuple(IdleInstance(i.id, i.idle_since) for i in self._idle if i.usable),
                max_instances=self.max_instances,
                min_instances=self.min_instances,
                last_scale_out=self._last_scale_out,
            ),
            now,
            self._policy,
        )
        for instance_id in decision.stop:
            instance = self.instances[instance_id]
            self._idle.remove(instance)
            instance.stop()
        return len(decision.stop)

    def drain(self) -> None:
        """Stop taking calls: idle instances stop now, busy ones after their call."""
        self.draining = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolRetired())
        for instance in list(self._idle):
            instance.stop()
        self._idle.clear()
        if not self.instances and self._starting == 0:
            self._empty()

    def kill_all(self) -> None:
        for instance in list(self.instances.values()):
            instance.stop()


_RANDOM = bytearray()


def new_request_id() -> str:
    """A random (version 4) UUID, from a buffer of random bytes refilled 256 ids at a
    time: one ``getrandom`` call per call was a visible share of a warm invoke."""
    if not _RANDOM:
        _RANDOM.extend(os.urandom(16 * 256))
    raw = _RANDOM[-16:]
    del _RANDOM[-16:]
    return str(uuid.UUID(bytes=bytes(raw), version=4))
