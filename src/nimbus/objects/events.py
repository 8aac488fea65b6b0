"""Object events: which trigger a change matches, and the event it sends. Pure.

The event is S3's event notification (``eventVersion`` 2.1), one record per
invocation, as Lambda functions receive it from S3::

    {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
                  "awsRegion": "local", "eventTime": "2026-11-24T09:00:00.123Z",
                  "eventName": "ObjectCreated:Put",
                  "userIdentity": {"principalId": "..."},
                  "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                  "responseElements": {"x-amz-request-id": "...", "x-amz-id-2": "..."},
                  "s3": {"s3SchemaVersion": "1.0", "configurationId": "<trigger name>",
                         "bucket": {"name": "photos", "ownerIdentity": {...},
                                    "arn": "arn:aws:s3:::photos"},
                         "object": {"key": "cats/tom+1.jpg", "size": 1024,
                                    "eTag": "...", "sequencer": "000000000000002A"}}}]}

The key is URL-encoded as S3 encodes it (``quote_plus``: a space is ``+``), so
handlers written for S3 (``unquote_plus(record["s3"]["object"]["key"])``) work
unmodified. Removal events carry no size or eTag, as on S3.

Each (trigger, change) pair has a fixed event id, a uuid5 of the trigger, the
bucket, the key and the change's sequencer: moving an outbox row into the queue
twice stores one event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from nimbus.domain.trigger import Trigger
from nimbus.objects.model import Change
from nimbus.triggers.scf_events import scf_cos_event

#: The event names a trigger may ask for (S3's, with the ``s3:`` prefix).
EVENT_NAMES = (
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
)
DEFAULT_EVENTS = ("s3:ObjectCreated:*",)
REGION = "local"
_EVENT_NAMESPACE = uuid.UUID("2b0f6f55-59f5-4d0e-8f56-0c5f3b0b7a41")


def wants(events: Iterable[str], event_name: str) -> bool:
    """Whether a trigger asking for ``events`` gets ``event_name`` (``ObjectCreated:Put``)."""
    family = event_name.split(":", 1)[0]
    return any(wanted == f"s3:{event_name}" or wanted == f"s3:{family}:*" for wanted in events)


def matches(trigger: Trigger, change: Change) -> bool:
    """An enabled object trigger of the bucket's namespace, for this event and key."""
    config = trigger.config
    key = change.info.key
    return (
        trigger.enabled
        and trigger.type == "object"
        and config.get("bucket") == change.info.bucket
        and wants(config.get("events") or DEFAULT_EVENTS, change.event_name)
        and key.startswith(config.get("prefix") or "")
        and key.endswith(config.get("suffix") or "")
    )


def event_id(trigger: Trigger, change: Change) -> str:
    info = change.info
    return str(
        uuid.uuid5(
            _EVENT_NAMESPACE,
            f"{trigger.namespace}/{trigger.function}/{trigger.name}/"
            f"{info.bucket}/{info.key}/{info.sequencer}",
        )
    )


def encode_key(key: str) -> str:
    """The key as S3 writes it in events (form encoding; ``/`` kept)."""
    return quote_plus(key, safe="/")


def s3_record(
    change: Change,
    *,
    configuration_id: str,
    owner: str,
    principal: str,
    source_ip: str,
    request_id: str,
) -> dict[str, Any]:
    info = change.info
    obj: dict[str, Any] = {"key": encode_key(info.key)}
    if change.event_name.startswith("ObjectCreated"):
        obj["size"] = info.size
        obj["eTag"] = info.etag
    obj["sequencer"] = info.sequencer
    when = datetime.fromtimestamp(change.time, UTC)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": change.event_name,
        "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": source_ip},
        "responseElements": {"x-amz-request-id": request_id, "x-amz-id-2": request_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": info.bucket,
                "ownerIdentity": {"principalId": owner},
                "arn": f"arn:aws:s3:::{info.bucket}",
            },
            "object": obj,
        },
    }


def event_payload(record: dict[str, Any]) -> bytes:
    return json.dumps({"Records": [record]}, ensure_ascii=False).encode("utf-8")


def cos_payload(change: Change, trigger: Trigger, source_ip: str, request_id: str) -> bytes:
    """The event of a trigger with the ``scf`` flavour: Tencent COS's shape, as SCF code
    reads it (see :mod:`nimbus.triggers.scf_events`). The object's URL is its path on
    Nimbus's S3 endpoint (``/s3/BUCKET/KEY``)."""
    info = change.info
    event = scf_cos_event(
        bucket=info.bucket,
        key=info.key,
        size=info.size if change.event_name.startswith("ObjectCreated") else 0,
        event_name=change.event_name,
        time=datetime.fromtimestamp(change.time, UTC),
        request_id=request_id,
        source_ip=source_ip,
        endpoint="/s3",
        event_queue=f"nimbus:{trigger.namespace}/{trigger.function}/"
        f"{trigger.qualifier or '$LATEST'}",
    )
    return json.dumps(event, ensure_ascii=False).encode("utf-8")
