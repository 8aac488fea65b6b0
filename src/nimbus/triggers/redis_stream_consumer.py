"""The consumer behind a ``redis-stream`` trigger (see :mod:`nimbus.triggers.redis_stream`).

Kept apart so that the Redis client is imported with the first consumer, not on
every start of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from nimbus.domain.invocation import InvocationResult
from nimbus.domain.trigger import Trigger
from nimbus.domain.version import parse_qualifier
from nimbus.errors import NimbusError, ThrottledError
from nimbus.pool.pool import new_request_id
from nimbus.store.secretbox import SecretBox
from nimbus.triggers.redis_stream import (
    BLOCK_MS,
    LAG_EVERY_S,
    RECONNECT_BASE_S,
    RECONNECT_CAP_S,
    SCAN_EVERY_S,
    SCAN_PAGE,
    SCAN_PAGES,
    THROTTLE_BASE_S,
    THROTTLE_CAP_S,
    TOUCH_EVERY_S,
    ConsumerStatus,
    RedisStreamKind,
    _key,
)
from nimbus.triggers.redis_stream_policy import (
    DEAD_SUFFIX,
    ORPHAN_IDLE_S,
    REDACTED,
    RETRY_BASE_S,
    SEAL_CONTEXT,
    Message,
    Pending,
    chunks_by_size,
    due_for_retry,
    failed_items,
    group_of,
    parse_url,
    retry_delay_s,
    text_of,
)

log = logging.getLogger("nimbus.triggers.redis")


async def _call(awaitable: Awaitable[Any] | Any) -> Any:
    """redis-py types its commands as ``Awaitable | value`` (one signature for both
    clients); the asyncio client always returns an awaitable."""
    return await cast(Awaitable[Any], awaitable)


class _Consumer:
    """Reads one trigger's stream in its group and invokes its function, one batch at a
    time (entries are handed to the function in stream order, retries aside)."""

    def __init__(self, kind: RedisStreamKind, trigger: Trigger) -> None:
        self.kind = kind
        self.trigger = trigger
        config = trigger.config
        self.endpoint = parse_url(config["url"])
        self.stream: str = config["stream"]
        self.group = group_of(trigger)
        self.batch_size: int = config["batch_size"]
        self.window_s: float = config["batch_window_ms"] / 1000
        self.max_attempts: int = config["max_attempts"]
        self.arn = self.endpoint.arn(self.stream)
        self.name = f"{kind._node}/{trigger.namespace}/{trigger.function}/{trigger.name}"
        self.labels = _key(trigger)
        self.status = ConsumerStatus.STARTING
        self.last_error: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._stopping = asyncio.Event()
        self._in_flight = kind._in_flight.setdefault(self.labels, set())
        self._unacked: list[str] = []  # succeeded, but XACK did not get through
        self._errors: dict[str, str] = {}  # newest error per failed entry, for its dead letter
        self._next_scan = 0.0
        self._next_lag = 0.0
        self._had_group = False
        self._worked = False  # a read succeeded since the last (re)connection

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"nimbus-redis-{self.name}")

    def stop(self) -> None:
        """Stop after the read in progress (at most ``BLOCK_MS``) and the batch in hand.

        A blocked XREADGROUP is not cancelled: Redis may already have delivered entries
        to it (they are pending to this consumer), and they would stay pending, so what a
        last read returns is processed like any batch."""
        self._stopping.set()

    def abort(self) -> None:
        """Stop now: the batch in hand stays pending and is delivered again later."""
        self._stopping.set()
        if self.task is not None:
            self.task.cancel()

    # ---- connection --------------------------------------------------------------------
    async def _run(self) -> None:
        delay = RECONNECT_BASE_S
        try:
            while not self._stopping.is_set():
                self._worked = False
                try:
                    await self._connect()
                    await self._consume()
                except (RedisError, OSError, NimbusError) as exc:
                    self._failed(exc)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("consumer %s failed", self.name)
                    self._failed(exc)
                else:
                    break
                finally:
                    await self._close()
                if self._worked:
                    delay = RECONNECT_BASE_S  # it worked for a while: start over
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(RECONNECT_CAP_S, delay * 2)
        finally:
            self.status = ConsumerStatus.STOPPED

    async def _connect(self) -> None:
        password = None
        sealed = self.trigger.config.get("password_sealed")
        if sealed:
            password = self.kind._secrets.open(sealed, SEAL_CONTEXT).decode()
        e = self.endpoint
        self._client = aioredis.Redis(
            host=e.host,
            port=e.port,
            db=e.db,
            username=e.username,
            password=password,
            ssl=e.scheme == "rediss",
            socket_connect_timeout=5,
            socket_timeout=BLOCK_MS / 1000 + self.window_s + 10,
            retry=Retry(NoBackoff(), 0),  # this loop reconnects, with its own backoff
            client_name=f"nimbus:{self.trigger.function}/{self.trigger.name}",
        )
        await self._ensure_group()
        unacked, self._unacked = self._unacked, []
        if unacked:
            await self._ack(unacked)  # on failure they are kept for the next connection
        if self.status is not ConsumerStatus.CONSUMING:
            if self.last_error is not None:
                log.info("consumer %s: connected again to %s", self.name, self.arn)
            self.status = ConsumerStatus.CONSUMING

    async def _ensure_group(self, *, vanished: bool = False) -> None:
        """Create the group when missing. A group that vanished while we used it (Redis
        restarted without persistence, or it was destroyed) starts again at ``0``: the
        entries in the stream now were never delivered to it."""
        start = "0" if vanished or self._had_group else self.trigger.config["start"]
        try:
            await _call(self._redis.xgroup_create(self.stream, self.group, start, mkstream=True))
            if vanished or self._had_group:
                log.warning(
                    "consumer %s: group %s of %s was gone; created it again from the "
                    "start of the stream",
                    self.name,
                    self.group,
                    self.arn,
                )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._had_group = True

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise RedisError("not connected")
        return self._client

    def _failed(self, exc: BaseException) -> None:
        text = _scrub_error(exc, self.kind._secrets, self.trigger)
        if self.status is not ConsumerStatus.ERROR or text != self.last_error:
            log.warning(
                "consumer %s of %s: %s; reconnecting with backoff", self.name, self.arn, text
            )
        self.status = ConsumerStatus.ERROR
        self.last_error = text
        self.kind._metrics.stream_error(*self.labels)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake when the consumer is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # ---- the loop ------------------------------------------------------------------------
    async def _consume(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            batch: list[Message] = []
            if now >= self._next_scan:
                self._next_scan = now + SCAN_EVERY_S
                batch = await self._claim_due()
            if not batch:
                batch = await self._read()
            self._worked = True
            if batch:
                await self._process(batch)
            if now >= self._next_lag:
                self._next_lag = now + LAG_EVERY_S
                await self._update_lag()

    async def _read(self) -> list[Message]:
        """New entries: up to ``batch_size``, waiting up to ``batch_window_ms`` to fill."""
        batch = await self._read_new(self.batch_size, BLOCK_MS)
        if batch and self.window_s > 0 and len(batch) < self.batch_size:
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.batch_size and not self._stopping.is_set():
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    break
                more = await self._read_new(self.batch_size - len(batch), left_ms)
                if not more:
                    break
                batch += more
        return batch

    async def _read_new(self, count: int, block_ms: int) -> list[Message]:
        try:
            answer = await _call(
                self._redis.xreadgroup(
                    self.group, self.name, {self.stream: ">"}, count=count, block=max(1, block_ms)
                )
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group(vanished=True)
            return []
        messages = [
            Message(text_of(mid), fields or {}, 1)
            for _stream, entries in _streams(answer)
            for mid, fields in entries
        ]
        if messages:
            self.kind._metrics.stream_messages(*self.labels, "consumed", len(messages))
        return messages

    async def _claim_due(self) -> list[Message]:
        """Claim entries of the pending list due for a retry (or orphaned), up to a batch."""
        due: dict[int, list[Pending]] = {}  # min idle ms -> entries
        found = 0
        start = "-"
        for _page in range(SCAN_PAGES):
            try:
                rows = await _call(
                    self._redis.xpending_range(
                        self.stream,
                        self.group,
                        min=start,
                        max="+",
                        count=SCAN_PAGE,
                        idle=int(RETRY_BASE_S * 1000),
                    )
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group(vanished=True)
                return []
            for row in rows:
                entry = Pending(
                    text_of(row["message_id"]),
                    text_of(row["consumer"]),
                    int(row["time_since_delivered"]),
                    int(row["times_delivered"]),
                )
                if found < self.batch_size and due_for_retry(
                    entry, me=self.name, in_flight=self._in_flight
                ):
                    wait_ms = int(retry_delay_s(entry.delivered) * 1000)
                    if entry.consumer != self.name:
                        wait_ms = max(wait_ms, int(ORPHAN_IDLE_S * 1000))
                    due.setdefault(wait_ms, []).append(entry)
                    found += 1
            if len(rows) < SCAN_PAGE or found >= self.batch_size:
                break
            start = "(" + text_of(rows[-1]["message_id"])
        delivered = {e.message_id: e.delivered for group in due.values() for e in group}
        claimed: list[Message] = []
        for min_idle_ms, entries in due.items():
            answer = await _call(
                self._redis.xclaim(
                    self.stream,
                    self.group,
                    self.name,
                    min_idle_ms,
                    [e.message_id for e in entries],
                )
            )
            for mid, fields in answer or []:
                if fields is None:  # deleted from the stream meanwhile
                    continue
                ident = text_of(mid)
                claimed.append(Message(ident, fields, delivered[ident] + 1))
        claimed.sort(key=lambda m: _id_order(m.id))
        if claimed:
            self.kind._metrics.stream_messages(*self.labels, "consumed", len(claimed))
        return claimed

    async def _update_lag(self) -> None:
        if self._stopping.is_set():
            return
        with contextlib.suppress(RedisError, KeyError, TypeError, ValueError):
            groups = await _call(self._redis.xinfo_groups(self.stream))
            for info in groups:
                if text_of(info["name"]) == self.group:
                    lag = info.get("lag")
                    self.kind._metrics.stream_lag(
                        *self.labels, int(lag) if lag is not None else None
                    )

    # ---- one batch -----------------------------------------------------------------------
    async def _process(self, batch: list[Message]) -> None:
        exhausted = [m for m in batch if m.attempt > self.max_attempts]
        if exhausted:  # delivered again after its last attempt (a server that died mid-call)
            for m in exhausted:
                m.attempt -= 1  # this delivery is not an attempt
                self._errors.setdefault(
                    m.id,
                    f"Stream.AttemptsExhausted: delivered {m.attempt} times without success "
                    "(the server stopped during the call)",
                )
            await self._dead_letter(exhausted)
            batch = [m for m in batch if m.attempt <= self.max_attempts]
        encoded = [
            (m, json.dumps(m.record(self.arn, self.stream, self.group)).encode()) for m in batch
        ]
        chunks, too_big = chunks_by_size(encoded, self.kind._max_payload_bytes)
        if too_big:
            for m in too_big:
                self._errors[m.id] = (
                    f"Stream.MessageTooLarge: the entry's event is larger than "
                    f"{self.kind._max_payload_bytes} bytes"
                )
            await self._dead_letter(too_big)
        for chunk in chunks:
            await self._invoke(chunk)

    async def _invoke(self, chunk: list[tuple[Message, bytes]]) -> None:
        messages = [m for m, _ in chunk]
        ids = [m.id for m in messages]
        payload = b'{"Records": [' + b", ".join(e for _, e in chunk) + b"]}"
        self._in_flight.update(ids)
        toucher = asyncio.create_task(self._touch(ids))
        try:
            result, error = await self._call_function(payload)
        finally:
            toucher.cancel()
            self._in_flight.difference_update(ids)
        if result is None and error is None:
            return  # stopped while throttled: the entries stay pending
        failed: set[str]
        if error is not None:
            failed = set(ids)
        elif result is not None and result.error is not None:
            failed = set(ids)
            error = f"{result.error.error_type}: {result.error.error_message}"
        else:
            failed, error = failed_items(result.payload if result else None, ids)
            error = error or "Function.BatchItemFailure: the function named it in batchItemFailures"
        succeeded = [i for i in ids if i not in failed]
        if len(self._errors) > 100_000:  # bounded (entries may be retried elsewhere)
            self._errors.clear()
        for ident in failed:
            self._errors[ident] = error or "failed"
        if succeeded:
            await self._ack(succeeded)
            self.kind._metrics.stream_messages(*self.labels, "acked", len(succeeded))
            for ident in succeeded:
                self._errors.pop(ident, None)
        if failed:
            self.kind._metrics.stream_messages(*self.labels, "failed", len(failed))
            last = [m for m in messages if m.id in failed and m.attempt >= self.max_attempts]
            if last:
                await self._dead_letter(last)
            log.info(
                "consumer %s: %d of %d entries failed (%s); %d dead-lettered",
                self.name,
                len(failed),
                len(ids),
                error,
                len(last),
            )

    async def _call_function(self, payload: bytes) -> tuple[InvocationResult | None, str | None]:
        """The function's result, or a platform error text; (None, None) when the consumer
        was stopped while the function stayed throttled."""
        t = self.trigger
        delay = THROTTLE_BASE_S
        while True:
            try:
                result = await self.kind._dispatcher.invoke(
                    t.namespace,
                    t.function,
                    payload,
                    qualifier=parse_qualifier(t.qualifier),
                    request_id=new_request_id(),
                )
            except ThrottledError as exc:
                if self._stopping.is_set():
                    return None, None
                self.status = ConsumerStatus.THROTTLED
                log.info("consumer %s: throttled (%s); waiting %.1f s", self.name, exc.code, delay)
                await self._sleep(delay)
                delay = min(THROTTLE_CAP_S, delay * 2)
                continue
            except NimbusError as exc:  # the version or alias went away, ...
                return None, f"{exc.code}: {exc.message}"
            except Exception as exc:
                log.exception("consumer %s: invoking %s failed", self.name, t.function)
                return None, f"Platform.InternalError: {exc}"
            if self.status is ConsumerStatus.THROTTLED:
                self.status = ConsumerStatus.CONSUMING
            return result, None

    async def _touch(self, ids: list[str]) -> None:
        """Keep entries in flight fresh in the pending list (no attempt counted)."""
        while True:
            await asyncio.sleep(TOUCH_EVERY_S)
            with contextlib.suppress(RedisError, OSError):
                await _call(
                    self._redis.xclaim(
                        self.stream, self.group, self.name, 0, list[Any](ids), justid=True
                    )
                )

    async def _ack(self, ids: list[str]) -> None:
        try:
            await _call(self._redis.xack(self.stream, self.group, *ids))
        except (RedisError, OSError):
            self._unacked.extend(ids)  # acked once connected again; pending meanwhile
            raise

    async def _dead_letter(self, messages: list[Message]) -> None:
        """Move entries to ``<stream>:dead`` and ack them, in one transaction."""
        t = self.trigger
        failed_at = datetime.now(UTC).isoformat()
        async with self._redis.pipeline(transaction=True) as pipe:
            for m in messages:
                fields: dict[Any, Any] = dict(m.fields)
                fields.update(
                    {
                        "nimbus:message-id": m.id,
                        "nimbus:error": self._errors.get(m.id, "failed"),
                        "nimbus:attempts": str(m.attempt),
                        "nimbus:group": self.group,
                        "nimbus:trigger": f"{t.namespace}/{t.function}/{t.name}",
                        "nimbus:failed-at": failed_at,
                    }
                )
                pipe.xadd(self.stream + DEAD_SUFFIX, cast(Any, fields))
            pipe.xack(self.stream, self.group, *[m.id for m in messages])
            await pipe.execute()
        self.kind._metrics.stream_messages(*self.labels, "dead_lettered", len(messages))
        log.warning(
            "consumer %s: moved %d entries to %s%s (%s)",
            self.name,
            len(messages),
            self.stream,
            DEAD_SUFFIX,
            self._errors.get(messages[0].id) or "failed",
        )
        for m in messages:
            self._errors.pop(m.id, None)


def _streams(answer: Any) -> list[tuple[Any, list[tuple[Any, dict[bytes, bytes] | None]]]]:
    """XREADGROUP's answer as (stream, entries) pairs, for RESP2 (a list) and RESP3 (a map)."""
    if not answer:
        return []
    if isinstance(answer, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in answer.items()]
    return [(stream, entries) for stream, entries in answer]


def _id_order(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


def _scrub_error(exc: BaseException, secrets: SecretBox, trigger: Trigger) -> str:
    """The error as text, without the password should a driver message contain it."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    sealed = trigger.config.get("password_sealed")
    if sealed:
        with contextlib.suppress(Exception):
            password = secrets.open(sealed, SEAL_CONTEXT).decode()
            if password:
                text = text.replace(password, REDACTED)
    return text[:1000]
