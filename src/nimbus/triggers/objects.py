"""The ``object`` trigger kind: object storage events invoke a function asynchronously.

Configuration::

    {"bucket": "photos",                      # required; a bucket of the trigger's namespace
     "events": ["s3:ObjectCreated:*"],        # default; or s3:ObjectRemoved:*, or specific
                                              # ones such as s3:ObjectCreated:Put
     "prefix": "uploads/", "suffix": ".jpg"}  # default "": every key

Each put, copy, completed multipart upload or delete in the bucket that matches
gives every matching enabled trigger one asynchronous invocation whose event is
S3's event notification (see :mod:`nimbus.objects.events`), committed with the
object and moved into the durable queue by :mod:`nimbus.objects.service`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nimbus.domain.trigger import Trigger
from nimbus.errors import InvalidTriggerError
from nimbus.objects.events import DEFAULT_EVENTS, EVENT_NAMES
from nimbus.objects.names import MAX_KEY_BYTES, bucket_name_problem
from nimbus.objects.service import ObjectService
from nimbus.triggers.scf_events import check_flavour

_KEYS = {"bucket", "events", "prefix", "suffix", "flavour"}


class ObjectTriggerKind:
    type = "object"

    def __init__(self, service: ObjectService) -> None:
        self._service = service

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        unknown = set(config) - _KEYS
        bucket = config.get("bucket")
        if unknown or not isinstance(bucket, str):
            raise InvalidTriggerError(
                'an object trigger takes {"bucket": NAME, "events": ["s3:ObjectCreated:*", ...], '
                '"prefix": "", "suffix": "", "flavour": "lambda" | "scf"}'
                + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
            )
        problem = bucket_name_problem(bucket)
        if problem is not None:
            raise InvalidTriggerError(f"invalid bucket name {bucket!r}: {problem}")
        raw_events = config.get("events") or list(DEFAULT_EVENTS)
        if isinstance(raw_events, str):
            raw_events = [raw_events]
        if not isinstance(raw_events, list) or not all(isinstance(e, str) for e in raw_events):
            raise InvalidTriggerError("events must be a list of event names")
        wrong = [e for e in raw_events if e not in EVENT_NAMES]
        if wrong:
            raise InvalidTriggerError(
                f"unknown event {wrong[0]!r}: choose from {', '.join(EVENT_NAMES)}"
            )
        clean: dict[str, Any] = {"bucket": bucket, "events": list(dict.fromkeys(raw_events))}
        for name in ("prefix", "suffix"):
            value = config.get(name) or ""
            if not isinstance(value, str) or len(value.encode()) > MAX_KEY_BYTES:
                raise InvalidTriggerError(f"{name} must be text of at most {MAX_KEY_BYTES} bytes")
            clean[name] = value
        clean["flavour"] = check_flavour(config)
        return clean

    async def admit(self, namespace: str, config: dict[str, Any]) -> None:
        """The bucket must exist in the trigger's namespace (checked when it is created)."""
        bucket = await asyncio.to_thread(self._service.store.bucket, config["bucket"])
        if bucket is None or bucket.namespace != namespace:
            raise InvalidTriggerError(
                f"bucket {config['bucket']!r} does not exist in namespace {namespace!r}: create "
                "it first (`aws s3 mb s3://NAME`, boto3's create_bucket, or "
                "`nimbus bucket create NAME`)"
            )

    def changed(self, trigger: Trigger) -> None:
        self._service.trigger_changed(trigger)

    def removed(self, trigger: Trigger) -> None:
        self._service.trigger_removed(trigger)

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()
