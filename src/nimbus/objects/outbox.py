"""Moving object events from the store's outbox into the durable queue.

A write commits its events as outbox rows with the object (see
:mod:`nimbus.objects.store`); this pump moves them into the queue of
asynchronous invocations (``queue.db``) with the function's retry settings, then
deletes them, and wakes the consumers. Event ids are fixed by the change, so a
row moved twice (a crash between the enqueue and the delete) is stored once;
rows left by a crash move at the next start. A row whose function (or version,
or alias) is gone is dropped with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nimbus.dispatch.directory import FunctionDirectory
from nimbus.domain.version import parse_qualifier
from nimbus.errors import NotFoundError
from nimbus.objects.store import ObjectStore
from nimbus.queue.base import NewEvent, Queue

log = logging.getLogger("nimbus.objects")

#: How long chain depths of delivered events are remembered.
CHAIN_MEMORY_S = 7 * 86_400.0


class OutboxPump:
    def __init__(
        self,
        *,
        store: ObjectStore,
        queue: Queue,
        directory: FunctionDirectory,
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self._queue = queue
        self._directory = directory
        self._wake = wake
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Rows were committed: move them now."""
        self._kick.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="nimbus-object-events")

    async def stop(self) -> None:
        """Stop moving (what is left in the outbox moves at the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self, idle_s: float = 1.0) -> None:
        next_prune = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), idle_s)
            self._kick.clear()
            try:
                while await self.deliver() > 0:
                    pass
                if time.time() > next_prune:
                    next_prune = time.time() + 3600
                    await asyncio.to_thread(self.store.prune_chain, time.time() - CHAIN_MEMORY_S)
            except Exception:
                log.exception("moving object events into the queue failed; retrying")

    async def deliver(self, limit: int = 100) -> int:
        """Move up to ``limit`` outbox rows into the durable queue; how many were moved."""
        pending = await asyncio.to_thread(self.store.pending, limit)
        if not pending:
            return 0
        new: list[NewEvent] = []
        for note in pending:
            try:
                head, _ = await self._directory.resolve(
                    note.namespace, note.function, parse_qualifier(note.qualifier)
                )
            except NotFoundError as exc:
                log.warning(
                    "object event %s for %s/%s dropped: %s",
                    note.id,
                    note.namespace,
                    note.function,
                    exc.message,
                )
                continue
            new.append(
                NewEvent(
                    namespace=note.namespace,
                    function=note.function,
                    payload=note.payload,
                    qualifier=note.qualifier,
                    max_attempts=head.async_max_attempts,
                    max_age_s=float(head.async_max_age_s),
                    id=note.id,
                )
            )
        if new:
            await asyncio.to_thread(self._queue.enqueue_many, new, now=time.time())
        await asyncio.to_thread(self.store.delivered, [n.id for n in pending])
        if new:
            self._wake()
        return len(pending)
