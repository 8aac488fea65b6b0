"""Message-queue triggers on Redis Streams: the ``redis-stream`` kind.

Each enabled trigger runs one consumer on this node, in the trigger's consumer
group (``XGROUP CREATE ... MKSTREAM`` at ``start`` when the group is missing). It
reads up to ``batch_size`` new entries (``XREADGROUP ... BLOCK``, waiting up to
``batch_window_ms`` more to fill the batch) and invokes the function once,
**synchronously**, through the dispatcher every other call uses, with a
``{"Records": [...]}`` event. Then, per entry:

- the function succeeded: ``XACK``. With Lambda's partial-batch answer,
  ``{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}``, only the entries
  not named are acked; the named ones failed.
- it failed (raised, timed out, crashed, or answered a malformed partial batch):
  the entry stays in the group's pending list and is claimed again (``XPENDING``
  by idle time, then ``XCLAIM``) after a backoff that doubles per attempt. The
  attempt count is Redis's delivery count. The attempt numbered ``max_attempts``
  that fails moves the entry to ``<stream>:dead`` (its fields, plus ``nimbus:*``
  fields with the error and the attempts) and acks it, in one transaction.
- it was throttled (429: instances, reserved concurrency, quotas): not a failure.
  The batch is held and offered again after 1 s, doubling to 30 s; no attempt counts.

Delivery is at least once: an entry is acked only after its function succeeded,
so a server killed mid-batch leaves it pending, and the next start (same consumer
name: the node and the trigger) claims it again. Entries in flight are re-claimed
with ``JUSTID`` every few seconds, so another node sharing the group does not take
them over; an entry another consumer left idle for ``ORPHAN_IDLE_S`` is taken over.

A Redis that is down or refuses a command never ends the consumer: it logs, keeps
the error for the trigger's ``status``/``last_error``, backs off (capped) and
connects again. A password in the URL is sealed at rest (:class:`SecretBox`) and
shown as ``****``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nimbus.dispatch.dispatcher import Dispatcher
from nimbus.domain.trigger import Trigger
from nimbus.metrics import Metrics
from nimbus.store.secretbox import SecretBox
from nimbus.triggers.base import TriggerState
from nimbus.triggers.redis_stream_policy import (
    KIND,
    SEAL_CONTEXT,
    public_config,
    validate_config,
)

if TYPE_CHECKING:
    from nimbus.triggers.redis_stream_consumer import _Consumer

log = logging.getLogger("nimbus.triggers.redis")

#: Longest XREADGROUP wait; pending retries are looked for in between.
BLOCK_MS = 500
#: How often the pending list is scanned for entries due for a retry.
SCAN_EVERY_S = 0.5
#: Entries in flight are re-claimed (JUSTID: no attempt counted) this often.
TOUCH_EVERY_S = 10.0
#: Reconnecting after an error: from this delay, doubling (with jitter) to the cap.
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 30.0
#: A throttled batch is offered again after this long, doubling to the cap.
THROTTLE_BASE_S = 1.0
THROTTLE_CAP_S = 30.0
#: How often the group's lag is read for the metric (Redis 7: XINFO GROUPS).
LAG_EVERY_S = 5.0
#: Pending entries looked at per XPENDING page, and pages per scan.
SCAN_PAGE = 200
SCAN_PAGES = 5


class ConsumerStatus(enum.StrEnum):
    STARTING = "starting"  # connecting, creating the group
    CONSUMING = "consuming"  # reading and invoking
    THROTTLED = "throttled"  # the function is at its limits; the batch waits
    ERROR = "error"  # Redis unreachable or refusing; backing off, then reconnecting
    STOPPING = "stopping"  # disabled: finishing the read and the batch in hand
    STOPPED = "stopped"  # the trigger is disabled (or the server stops)


# ---- the kind ---------------------------------------------------------------------------


class RedisStreamKind:
    """Trigger kind ``redis-stream``: one consumer task per enabled trigger."""

    type = KIND

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        secrets: SecretBox,
        metrics: Metrics,
        node: str,
        max_payload_bytes: int,
        grace_s: float = 10.0,
    ) -> None:
        self._dispatcher = dispatcher
        self._secrets = secrets
        self._metrics = metrics
        self._node = node
        self._max_payload_bytes = max_payload_bytes
        self._grace_s = grace_s
        self._triggers: dict[tuple[str, str, str], Trigger] = {}
        self._consumers: dict[tuple[str, str, str], _Consumer] = {}
        self._retiring: set[_Consumer] = set()
        # Entries being processed, per trigger: shared by a consumer that is finishing its
        # batch and the one that replaced it (disabled, enabled again), so that the new
        # one does not claim them as if they had been left behind.
        self._in_flight: dict[tuple[str, str, str], set[str]] = {}
        self._started = False

    # ---- TriggerKind ----------------------------------------------------------------
    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return validate_config(config, lambda p: self._secrets.seal(p.encode(), SEAL_CONTEXT))

    def changed(self, trigger: Trigger) -> None:
        key = _key(trigger)
        self._triggers[key] = trigger
        if self._started:
            self._reconcile(key)

    def removed(self, trigger: Trigger) -> None:
        key = _key(trigger)
        self._triggers.pop(key, None)
        self._reconcile(key)
        if not self._in_flight.get(key):
            self._in_flight.pop(key, None)

    async def start(self) -> None:
        self._started = True
        for key in list(self._triggers):
            self._reconcile(key)

    async def stop(self) -> None:
        self._started = False
        for key in list(self._consumers):
            self._retire(key)
        consumers = list(self._retiring)
        tasks = [c.task for c in consumers if c.task is not None]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self._grace_s)
            for consumer in consumers:
                if consumer.task in late:
                    consumer.abort()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- what the API shows ----------------------------------------------------------
    def public_config(self, trigger: Trigger) -> dict[str, Any]:
        return public_config(trigger)

    def state(self, trigger: Trigger) -> TriggerState | None:
        key = _key(trigger)
        consumer = self._consumers.get(key)
        if consumer is None:
            if any(c.labels == key for c in self._retiring):
                return TriggerState(ConsumerStatus.STOPPING.value, None)
            status = ConsumerStatus.STARTING if trigger.enabled else ConsumerStatus.STOPPED
            return TriggerState(status.value, None)
        return TriggerState(consumer.status.value, consumer.last_error)

    # ---- consumers --------------------------------------------------------------------
    def _reconcile(self, key: tuple[str, str, str]) -> None:
        trigger = self._triggers.get(key)
        running = self._consumers.get(key)
        if running is not None and (
            trigger is None
            or not trigger.enabled
            or (trigger.config, trigger.qualifier)
            != (running.trigger.config, running.trigger.qualifier)
        ):
            self._retire(key)
            running = None
        if trigger is not None and trigger.enabled and running is None and self._started:
            # The Redis client (~50 ms of imports) loads with the first consumer, not
            # with every server start.
            from nimbus.triggers.redis_stream_consumer import _Consumer

            consumer = _Consumer(self, trigger)
            self._consumers[key] = consumer
            consumer.start()

    def _retire(self, key: tuple[str, str, str]) -> None:
        consumer = self._consumers.pop(key)
        consumer.stop()
        self._metrics.stream_lag(*key, None)
        if consumer.task is not None and not consumer.task.done():
            self._retiring.add(consumer)
            consumer.task.add_done_callback(lambda _t: self._retiring.discard(consumer))


def consumer_node(data_dir: Path) -> str:
    """This server's part of its consumer names: the host and its data directory, the same
    across restarts (so a restarted server finds its own pending entries)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def _key(trigger: Trigger) -> tuple[str, str, str]:
    return (trigger.namespace, trigger.function, trigger.name)
