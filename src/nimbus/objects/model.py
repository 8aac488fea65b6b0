"""The objects of object storage: buckets, objects, uploads and parts, and the changes and
notifications a write commits (see :mod:`nimbus.objects.store`). Plain data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Bucket:
    name: str
    namespace: str
    created_at: float


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    #: Hex MD5 of the body, or ``md5-of-part-md5s-N`` for multipart uploads (no quotes).
    etag: str
    content_type: str
    #: User metadata (``x-amz-meta-NAME``), names lower-case without the prefix.
    metadata: dict[str, str] = field(default_factory=dict)
    #: Stored response headers: content-encoding, content-disposition, cache-control...
    headers: dict[str, str] = field(default_factory=dict)
    modified: float = 0.0
    #: Position of the write in this store's history (S3's ``sequencer``).
    seq: int = 0
    #: The body's file, relative to the storage root.
    blob: str = ""

    @property
    def sequencer(self) -> str:
        return f"{self.seq:016X}"


@dataclass(frozen=True)
class Upload:
    id: str
    bucket: str
    key: str
    content_type: str
    metadata: dict[str, str]
    headers: dict[str, str]
    created_at: float


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    modified: float
    blob: str


@dataclass(frozen=True)
class Change:
    """An object was created or removed; its events are planned from this."""

    #: S3's event name without the ``s3:`` prefix, e.g. ``ObjectCreated:Put``.
    event_name: str
    #: The object written, or (for a removal) the object as it was, with the seq of the
    #: removal.
    info: ObjectInfo
    #: Chain depth of the events this change causes: 1 when it came from outside, d + 1
    #: when an instance wrote it while handling an event of depth d.
    depth: int
    time: float


@dataclass(frozen=True)
class Notification:
    """One asynchronous invocation an object event causes (an outbox row)."""

    id: str
    namespace: str
    function: str
    qualifier: str | None
    payload: bytes
    depth: int
    #: Why it is not delivered (the chain is too deep); None: delivered.
    stopped: str | None = None


Planner = Callable[[Change], Sequence[Notification]]


def no_events(_change: Change) -> Sequence[Notification]:
    return ()


@dataclass(frozen=True)
class Committed:
    """A write that was committed: the object, its notifications, the blobs it freed."""

    info: ObjectInfo
    notifications: Sequence[Notification] = ()
    #: Blobs no row points to any more (delete them after the commit).
    freed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listing:
    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    #: The last key or common prefix returned (where the next page starts after).
    last: str | None
