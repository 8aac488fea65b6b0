"""Asynchronous invocation: accept events durably, run them, retry, dead-letter.

``submit`` stores the event in the durable queue and returns at once (the
caller gets 202 and the event id). A consumer loop on this node leases events,
invokes their function through the same dispatcher as synchronous calls, and:

- acks a success (the result is kept for status queries), and sends a record to
  the function's ``on_success`` destination if it has one;
- on a function error, lets the queue retry it with exponential backoff and
  jitter until ``async_max_attempts`` or ``async_max_age_s`` is reached, then
  sends a record to ``on_failure`` or leaves the event in the dead letters,
  which can be listed and re-driven;
- when the function is throttled (its instances, its reserved concurrency or
  its namespace's quota are all busy, or the namespace's rate is spent), gives
  the event back without counting an attempt, to be tried again a little later:
  events are held back, never dropped.

A lease covers the function's timeout plus a margin and is extended while the
call runs; if this node dies, the lease expires and the event is leased again
(at least once delivery; the function sees the same request id every attempt,
its de-duplication key). Queue calls run in threads: the event loop never
blocks on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nimbus.dispatch.directory import FunctionDirectory
from nimbus.dispatch.dispatcher import Dispatcher
from nimbus.domain.function import service_not_invocable
from nimbus.domain.invocation import FunctionError, InvocationResult
from nimbus.domain.version import parse_qualifier
from nimbus.errors import (
    NotFoundError,
    PayloadTooLargeError,
    ServiceNotInvocableError,
    ThrottledError,
)
from nimbus.queue.base import Event, EventState, NewEvent, Queue
from nimbus.queue.policy import DeadReason

log = logging.getLogger("nimbus.events")

#: How long a lease lasts beyond the function's timeout, and how often it is extended.
LEASE_MARGIN_S = 30.0
EXTEND_EVERY_S = 10.0
#: A throttled event is tried again after this long (doubling, up to the cap).
THROTTLE_DELAY_S = 1.0
THROTTLE_DELAY_CAP_S = 30.0


@dataclass(frozen=True)
class EventStatus:
    """What ``GET /v1/invocations/{id}`` shows."""

    event: Event
    status: str  # queued, running, succeeded, failed (dead)

    @classmethod
    def of(cls, event: Event) -> EventStatus:
        status = {
            EventState.QUEUED: "queued",
            EventState.LEASED: "running",
            EventState.SUCCEEDED: "succeeded",
            EventState.DEAD: "failed",
        }[event.state]
        return cls(event, status)


class AsyncInvoker:
    def __init__(
        self,
        *,
        queue: Queue,
        dispatcher: Dispatcher,
        directory: FunctionDirectory,
        max_payload_bytes: int,
        concurrency: int,
        result_retention_s: float = 86_400.0,
        poll_s: float = 0.5,
    ) -> None:
        self._queue = queue
        self._dispatcher = dispatcher
        self._directory = directory
        self.max_payload_bytes = max_payload_bytes
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._consumer_id = f"node-{uuid.uuid4().hex[:12]}"
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._throttled: dict[str, float] = {}  # event id -> last hold-back delay
        self._retention_s = result_retention_s
        self._next_purge = 0.0
        self._stopping = False

    # ---- accepting events ------------------------------------------------------------
    async def submit(
        self, namespace: str, name: str, payload: bytes, qualifier: str | None
    ) -> Event:
        """Store an event for the function; it runs soon after. The function (and the
        version or alias) must exist: a mistake is refused now, not dead-lettered later."""
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"event is {len(payload)} bytes; the asynchronous limit is "
                f"{self.max_payload_bytes} bytes"
            )
        head, config = await self._directory.resolve(namespace, name, parse_qualifier(qualifier))
        if config.is_service:
            raise service_not_invocable(config)
        new = NewEvent(
            namespace=namespace,
            function=name,
            payload=payload,
            qualifier=qualifier,
            max_attempts=head.async_max_attempts,
            max_age_s=float(head.async_max_age_s),
        )
        event = await asyncio.to_thread(self._queue.enqueue, new, now=time.time())
        self._wakeup.set()
        return event

    async def forget_function(self, namespace: str, name: str) -> None:
        """The function was deleted: its queued, running and dead events go with it."""
        count = await asyncio.to_thread(self._queue.forget_function, namespace, name)
        if count:
            log.info("deleted %d asynchronous events of %s/%s", count, namespace, name)

    def wake(self) -> None:
        """New events were stored by someone else (a timer): look now."""
        self._wakeup.set()

    async def status(self, event_id: str) -> EventStatus | None:
        event = await asyncio.to_thread(self._queue.get, event_id)
        return EventStatus.of(event) if event is not None else None

    async def dead_letters(self, namespace: str, name: str, limit: int) -> list[Event]:
        return await asyncio.to_thread(self._queue.dead_letters, namespace, name, limit=limit)

    async def redrive(
        self, namespace: str, name: str, event_ids: list[str] | None, limit: int
    ) -> int:
        if event_ids is not None:
            # Only this function's dead letters, whatever ids the caller sends.
            mine = {e.id for e in await self.dead_letters(namespace, name, limit=10_000)}
            event_ids = [i for i in event_ids if i in mine]
        count = await asyncio.to_thread(
            lambda: self._queue.redrive(
                now=time.time(),
                event_ids=event_ids,
                namespace=namespace,
                function=name,
                limit=limit,
            )
        )
        self._wakeup.set()
        return count

    # ---- the consumer loop ------------------------------------------------------------
    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._consume(), name="nimbus-async-consumer")

    async def stop(self, grace_s: float) -> None:
        """Stop leasing; events in flight get ``grace_s`` to finish, the rest go back."""
        self._stopping = True
        self._wakeup.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _purge(self) -> None:
        """Forget succeeded events (and their results) older than the retention."""
        now = time.time()
        if now < self._next_purge:
            return
        self._next_purge = now + min(600.0, self._retention_s / 2)
        try:
            while (
                await asyncio.to_thread(
                    self._queue.purge_succeeded, now - self._retention_s, limit=10_000
                )
                == 10_000
            ):
                pass
        except Exception:
            log.exception("purging succeeded asynchronous events failed")

    async def _consume(self) -> None:
        while not self._stopping:
            await self._purge()
            free = self._concurrency - len(self._running)
            events: list[Event] = []
            if free > 0:
                try:
                    events = await asyncio.to_thread(
                        self._queue.lease,
                        self._consumer_id,
                        limit=free,
                        lease_s=LEASE_MARGIN_S,
                        now=time.time(),
                    )
                except Exception:  # a database hiccup must not end the consumer
                    log.exception("leasing asynchronous events failed")
            for event in events:
                task = asyncio.create_task(self._run(event))
                self._running.add(task)
                task.add_done_callback(self._finished)
            if events and len(events) == free:
                continue  # more may be waiting
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_s)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()  # a slot is free

    async def _run(self, event: Event) -> None:
        extender = asyncio.create_task(self._keep_leased(event))
        try:
            result = await self._dispatcher.invoke(
                event.namespace,
                event.function,
                event.payload,
                qualifier=parse_qualifier(event.qualifier),
                request_id=event.id,
            )
        except ThrottledError:
            last = self._throttled.get(event.id)
            delay = min(THROTTLE_DELAY_CAP_S, last * 2) if last else THROTTLE_DELAY_S
            self._throttled[event.id] = delay
            await self._call(self._queue.release, event, delay_s=delay)
            return
        except (NotFoundError, ServiceNotInvocableError) as exc:
            # The function, version or alias went away, or became an HTTP service.
            await self._fail(event, FunctionError(exc.code, exc.message))
            return
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._call(self._queue.release, event, delay_s=0.0))
            raise
        except Exception as exc:  # a platform fault: count the attempt, keep the event
            log.exception("asynchronous event %s failed in the platform", event.id)
            await self._fail(event, FunctionError("Platform.InternalError", str(exc)))
            return
        finally:
            extender.cancel()
        self._throttled.pop(event.id, None)
        if result.error is None:
            await self._call(self._queue.ack, event, result=result.payload)
            await self._destination(event, result, "Success")
        else:
            await self._fail(event, result.error, result)

    async def _keep_leased(self, event: Event) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            head = await self._directory.get(event.namespace, event.function)
            lease_s = head.timeout_s + LEASE_MARGIN_S
            while True:
                await self._call(self._queue.extend, event, lease_s=lease_s)
                await asyncio.sleep(EXTEND_EVERY_S)

    async def _fail(
        self, event: Event, error: FunctionError, result: InvocationResult | None = None
    ) -> None:
        await self._call(self._queue.fail, event, error=error)
        stored = await asyncio.to_thread(self._queue.get, event.id)
        if stored is not None and stored.state is EventState.DEAD:
            condition = (
                "EventAgeExceeded"
                if stored.dead_reason is DeadReason.AGE_EXCEEDED
                else "RetriesExhausted"
            )
            await self._destination(stored, result, condition, error)

    async def _call(self, method: Any, event: Event, **kwargs: Any) -> bool:
        try:
            return bool(
                await asyncio.to_thread(
                    lambda: method(
                        event.id,
                        self._consumer_id,
                        now=time.time(),
                        attempt=event.attempts,
                        **kwargs,
                    )
                )
            )
        except Exception:
            log.exception("queue update for event %s failed", event.id)
            return False

    async def _destination(
        self,
        event: Event,
        result: InvocationResult | None,
        condition: str,
        error: FunctionError | None = None,
    ) -> None:
        """Send a Lambda-style destination record to on_success / on_failure."""
        try:
            head = await self._directory.get(event.namespace, event.function)
        except NotFoundError:
            return
        target = head.on_success if condition == "Success" else head.on_failure
        if target is None:
            return
        response: Any = None
        if result is not None and result.error is None and result.payload is not None:
            with contextlib.suppress(ValueError):
                response = json.loads(result.payload)
        elif error is not None:
            response = error.to_dict()
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "requestId": event.id,
                "functionArn": f"arn:nimbus:lambda:local:{event.namespace}:function:"
                f"{event.function}:{event.qualifier or '$LATEST'}",
                "condition": condition,
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": _json_or_text(event.payload),
            "responseContext": {
                "statusCode": 200,
                "executedVersion": result.version if result is not None else None,
                **({"functionError": "Unhandled"} if condition != "Success" else {}),
            },
            "responsePayload": response,
        }
        try:
            await self.submit(event.namespace, target, json.dumps(record).encode(), None)
        except Exception as exc:  # a missing destination must not lose the outcome
            log.warning(
                "could not send the %s record of event %s to %r: %s",
                condition,
                event.id,
                target,
                exc,
            )


def _json_or_text(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")
