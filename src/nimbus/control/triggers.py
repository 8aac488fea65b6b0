"""Use cases on triggers, and the timer loop that fires them.

Triggers are kept in memory (loaded at start, updated on every write made
here), so neither a function-URL request nor the timer loop reads the database;
the store stays the durable copy.

A timer tick becomes an asynchronous invocation whose id is derived from the
trigger and the tick (uuid5), so enqueueing it twice (a crash between the
enqueue and remembering ``last_fired``) stores it once: each tick fires once
across restarts. Ticks missed while the server was down follow the trigger's
catch-up policy (see :mod:`nimbus.triggers.schedule`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from nimbus.dispatch.directory import FunctionDirectory
from nimbus.domain.audit import Actor, AuditAction, AuditEntry
from nimbus.domain.function import validate_name
from nimbus.domain.trigger import HTTP_AUTH, TRIGGER_NAME_RE, TRIGGER_TYPES, Trigger
from nimbus.domain.version import parse_qualifier
from nimbus.errors import InvalidTriggerError, TriggerExistsError, TriggerNotFoundError
from nimbus.queue.base import NewEvent, Queue
from nimbus.store.base import Store
from nimbus.triggers.base import AdmittingKind, DescribedKind, TriggerKind, TriggerState
from nimbus.triggers.scf_events import check_flavour, scf_timer_event
from nimbus.triggers.schedule import (
    InvalidScheduleError,
    due_ticks,
    parse_catch_up_policy,
    parse_schedule,
)

log = logging.getLogger("nimbus.triggers")
_TICK_NAMESPACE = uuid.UUID("6f1c8a52-7d3e-4b4e-9a57-1d2f0e5c9b10")
MAX_PAYLOAD_BYTES = 64 * 1024


def scheduled_event(trigger: Trigger, tick: datetime, event_id: str) -> dict[str, Any]:
    """The event a timer sends: EventBridge's "Scheduled Event" shape, as Lambda gets it,
    with the trigger's payload as ``detail``."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "nimbus.timer",
        "account": "000000000000",
        "time": tick.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [f"nimbus:timer:{trigger.namespace}/{trigger.function}/{trigger.name}"],
        "detail": trigger.config.get("payload", {}),
    }


class TriggerService:
    def __init__(
        self, *, store: Store, directory: FunctionDirectory, queue: Queue, wake: Any
    ) -> None:
        self._store = store
        self._directory = directory
        self._queue = queue
        self._wake = wake  # called after a timer enqueued events
        self._task: asyncio.Task[None] | None = None
        self._triggers: dict[tuple[str, str, str], Trigger] = {}
        self._urls: dict[tuple[str, str], Trigger] = {}  # enabled http triggers
        self._kinds: dict[str, TriggerKind] = {}

    def register(self, kind: TriggerKind) -> None:
        """Add a kind of trigger (before :meth:`start`)."""
        self._kinds[kind.type] = kind

    @property
    def types(self) -> tuple[str, ...]:
        return (*TRIGGER_TYPES, *self._kinds)

    def _put(self, trigger: Trigger) -> None:
        self._triggers[(trigger.namespace, trigger.function, trigger.name)] = trigger
        kind = self._kinds.get(trigger.type)
        if kind is not None:
            kind.changed(trigger)
        if trigger.type == "http":
            if trigger.enabled:
                self._urls[(trigger.namespace, trigger.function)] = trigger
            else:
                self._urls.pop((trigger.namespace, trigger.function), None)

    def _drop(self, namespace: str, function: str, name: str) -> None:
        gone = self._triggers.pop((namespace, function, name), None)
        kind = self._kinds.get(gone.type) if gone is not None else None
        if gone is not None and kind is not None:
            kind.removed(gone)
        if gone is not None and gone.type == "http":
            self._urls.pop((namespace, function), None)

    async def forget_function(self, namespace: str, function: str) -> None:
        """The function was deleted (the store deleted its triggers with it)."""
        for key in [k for k in self._triggers if k[:2] == (namespace, function)]:
            self._drop(*key)

    async def create(
        self,
        namespace: str,
        function: str,
        name: str,
        type_: str,
        *,
        qualifier: str | None,
        config: dict[str, Any],
        enabled: bool = True,
        actor: Actor | None = None,
    ) -> Trigger:
        validate_name(function)
        if not TRIGGER_NAME_RE.match(name):
            raise InvalidTriggerError(
                f"invalid trigger name {name!r}: use 1-64 letters, digits, '-' or '_', "
                "starting with a letter"
            )
        if type_ not in self.types:
            raise InvalidTriggerError(
                f"unknown trigger type {type_!r}; choose one of {', '.join(self.types)}"
            )
        await self._directory.resolve(namespace, function, parse_qualifier(qualifier))
        clean = self._validate(type_, config)
        kind = self._kinds.get(type_)
        if isinstance(kind, AdmittingKind):
            await kind.admit(namespace, clean)
        if type_ == "http":
            existing = await asyncio.to_thread(self._store.list_triggers, namespace, function)
            if any(t.type == "http" for t in existing):
                raise TriggerExistsError(
                    f"function {function!r} already has an http trigger (its URL); "
                    "a function has one URL, delete that trigger first"
                )
        trigger = Trigger(namespace, function, name, type_, qualifier, enabled, clean)
        entry = AuditEntry.by(actor, namespace, AuditAction.TRIGGER_CREATE, f"{function}/{name}")
        stored = await asyncio.to_thread(self._store.create_trigger, trigger, entry)
        self._put(stored)
        return stored

    def _validate(self, type_: str, config: dict[str, Any]) -> dict[str, Any]:
        kind = self._kinds.get(type_)
        if kind is not None:
            return kind.validate(config)
        if type_ == "http":
            auth = config.get("auth", "key")
            unknown = set(config) - {"auth", "flavour"}
            if auth not in HTTP_AUTH or unknown:
                raise InvalidTriggerError(
                    'an http trigger takes {"auth": "public" | "key", "flavour": "lambda" | '
                    '"scf"} only'
                )
            return {"auth": auth, "flavour": check_flavour(config)}
        unknown = set(config) - {"schedule", "timezone", "payload", "catch_up", "flavour"}
        if unknown or "schedule" not in config:
            raise InvalidTriggerError(
                "a timer trigger takes schedule (cron or rate(...)), and optionally "
                "timezone (IANA name), payload (JSON), catch_up (latest, all or none) and "
                "flavour (lambda or scf)"
            )
        timezone = str(config.get("timezone") or "UTC")
        try:
            parse_schedule(str(config["schedule"]), timezone)
            catch_up = parse_catch_up_policy(str(config.get("catch_up") or "latest"))
        except InvalidScheduleError as exc:
            raise InvalidTriggerError(str(exc)) from exc
        payload = config.get("payload", {})
        if len(json.dumps(payload)) > MAX_PAYLOAD_BYTES:
            raise InvalidTriggerError(f"a timer's payload is limited to {MAX_PAYLOAD_BYTES} bytes")
        return {
            "schedule": str(config["schedule"]),
            "timezone": timezone,
            "payload": payload,
            "catch_up": catch_up,
            "flavour": check_flavour(config),
        }

    async def list(self, namespace: str, function: str | None = None) -> list[Trigger]:
        if function is not None:
            await self._directory.get(namespace, validate_name(function))
        return await asyncio.to_thread(self._store.list_triggers, namespace, function)

    async def get(self, namespace: str, function: str, name: str) -> Trigger:
        for trigger in await self.list(namespace, function):
            if trigger.name == name:
                return trigger
        raise _not_found(function, name)

    async def set_enabled(
        self, namespace: str, function: str, name: str, enabled: bool, *, actor: Actor | None
    ) -> Trigger:
        await self._directory.get(namespace, validate_name(function))
        entry = AuditEntry.by(actor, namespace, AuditAction.TRIGGER_UPDATE, f"{function}/{name}")
        found = await asyncio.to_thread(
            self._store.set_trigger_enabled, namespace, function, name, enabled, entry
        )
        if found is None:
            raise _not_found(function, name)
        self._put(found)
        return found

    async def delete(
        self, namespace: str, function: str, name: str, *, actor: Actor | None
    ) -> None:
        await self._directory.get(namespace, validate_name(function))
        entry = AuditEntry.by(actor, namespace, AuditAction.TRIGGER_DELETE, f"{function}/{name}")
        if not await asyncio.to_thread(
            self._store.delete_trigger, namespace, function, name, entry
        ):
            raise _not_found(function, name)
        self._drop(namespace, function, name)

    def describe(self, trigger: Trigger) -> tuple[dict[str, Any], TriggerState | None]:
        """What the API shows of a trigger: its configuration (secrets left out, when its
        kind keeps any) and how its source is doing, when its kind says."""
        kind = self._kinds.get(trigger.type)
        if isinstance(kind, DescribedKind):
            return kind.public_config(trigger), kind.state(trigger)
        return trigger.config, None

    def http_trigger(self, namespace: str, function: str) -> Trigger | None:
        """The function's enabled http trigger, if it has one."""
        return self._urls.get((namespace, function))

    # ---- the timer loop ------------------------------------------------------------------
    def enabled_of(self, type_: str) -> tuple[Trigger, ...]:
        """The enabled triggers of one type, from memory."""
        return tuple(t for t in self._triggers.values() if t.type == type_ and t.enabled)

    async def start(self, interval_s: float = 0.5) -> None:
        for trigger in self._store.list_triggers():
            self._put(trigger)
        for kind in self._kinds.values():
            await kind.start()
        self._task = asyncio.create_task(self._timers(interval_s), name="nimbus-timers")

    async def stop(self) -> None:
        for kind in self._kinds.values():
            with contextlib.suppress(Exception):
                await kind.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _timers(self, interval_s: float) -> None:
        while True:
            try:
                timers = self.enabled_of("timer")
                fired = await asyncio.to_thread(self.fire_due, timers, datetime.now(UTC))
                for key, tick in fired.items():
                    current = self._triggers.get(key)
                    if current is not None:  # not deleted meanwhile
                        self._put(dataclasses.replace(current, last_fired=tick))
                if fired:
                    self._wake()
            except Exception:
                log.exception("firing timer triggers failed")
            await asyncio.sleep(interval_s)

    def fire_due(
        self, timers: Sequence[Trigger], now: datetime
    ) -> dict[tuple[str, str, str], datetime]:
        """Enqueue every due tick of these timers (in a thread); the newest tick fired,
        per timer."""
        fired: dict[tuple[str, str, str], datetime] = {}
        for trigger in timers:
            config = trigger.config
            schedule = parse_schedule(config["schedule"], config.get("timezone", "UTC"))
            created = trigger.created_at or now
            ticks = due_ticks(schedule, trigger.last_fired, now, created, config["catch_up"])
            for tick in ticks:
                event_id = str(
                    uuid.uuid5(
                        _TICK_NAMESPACE,
                        f"{trigger.namespace}/{trigger.function}/{trigger.name}/"
                        f"{created.isoformat()}/{tick.isoformat()}",
                    )
                )
                if config.get("flavour") == "scf":
                    event = scf_timer_event(trigger.name, tick, config.get("payload", {}))
                else:
                    event = scheduled_event(trigger, tick, event_id)
                payload = json.dumps(event).encode()
                self._queue.enqueue(
                    NewEvent(
                        namespace=trigger.namespace,
                        function=trigger.function,
                        payload=payload,
                        qualifier=trigger.qualifier,
                        id=event_id,
                    ),
                    now=now.timestamp(),
                )
                self._store.set_trigger_fired(
                    trigger.namespace, trigger.function, trigger.name, tick
                )
                fired[(trigger.namespace, trigger.function, trigger.name)] = tick
        return fired


def _not_found(function: str, name: str) -> TriggerNotFoundError:
    return TriggerNotFoundError(
        f"function {function!r} has no trigger {name!r}; list them with "
        f"`nimbus trigger list {function}`"
    )
