"""Object storage use cases: who may touch which bucket, writes, and their events.

Ownership: a bucket belongs to the namespace of the key (or function) that
created it; bucket names are shared by every namespace, as on S3. A caller acts
in one namespace: it sees and touches only that namespace's buckets (others
answer ``AccessDenied``), except admin keys, which reach every bucket. Invoker
keys only read.

Events: every write runs the :class:`~nimbus.objects.store.ObjectStore`
transaction with a *planner* built here from the enabled ``object`` triggers of
the bucket: the notifications are committed with the object (an outbox row
each). The pump then moves outbox rows into the durable queue (idempotent: an
event id is derived from the trigger and the change) and deletes them, so each
matching trigger gets its event at least once, even if the server dies between
the two steps.

Loops: an instance that writes while it handles an object event of chain depth
d causes events of depth d + 1 (the Runtime API socket says which instance is
writing, and the instance which invocation it runs). Events deeper than
``max_event_depth`` are not delivered: they are counted in
``nimbus_event_loops_stopped_total``, logged, and written to the function's
logs as a ``platform`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter

from nimbus.compat.shapes import account_id
from nimbus.dispatch.directory import FunctionDirectory
from nimbus.domain.trigger import Trigger
from nimbus.errors import NamespaceNotEmptyError
from nimbus.logs.store import LogLine, LogStore
from nimbus.metrics import Metrics
from nimbus.objects import body, events
from nimbus.objects.body import Received
from nimbus.objects.errors import S3Error, access_denied, no_such_bucket, no_such_key
from nimbus.objects.model import (
    Bucket,
    Change,
    Committed,
    Listing,
    Notification,
    ObjectInfo,
    Part,
    Planner,
    Upload,
)
from nimbus.objects.names import check_bucket_name, check_key
from nimbus.objects.outbox import OutboxPump
from nimbus.objects.store import ObjectStore
from nimbus.queue.base import Queue

log = logging.getLogger("nimbus.objects")

#: Parts of a multipart upload, but the last, are at least this big (as on S3).
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10_000
#: User metadata (``x-amz-meta-*`` names and values) per object (as on S3: 2 KB).
MAX_METADATA_BYTES = 2048


@dataclass(frozen=True)
class Caller:
    """Who makes a storage request, and where it acts."""

    #: The namespace it acts in: where its buckets are created and listed.
    namespace: str
    #: May create, write and delete (developer and admin keys, functions).
    writes: bool
    #: Reaches every namespace's buckets (admin keys).
    every_namespace: bool = False
    #: For events: ``userIdentity.principalId`` and ``sourceIPAddress``.
    principal: str = ""
    source_ip: str = "127.0.0.1"
    request_id: str = ""
    #: Set for functions: the invocation the writing instance runs (its events' cause)
    #: and the function, for log lines.
    cause: str | None = None
    function: str | None = None


class ObjectService:
    def __init__(
        self,
        *,
        store: ObjectStore,
        queue: Queue,
        directory: FunctionDirectory,
        wake: Any,
        metrics: Metrics,
        logs: LogStore,
        max_put_bytes: int,
        max_event_depth: int,
    ) -> None:
        self.store = store
        self._queue = queue
        self._directory = directory
        self._wake = wake
        self._logs = logs
        self.max_put_bytes = max_put_bytes
        self.max_event_depth = max_event_depth
        #: Enabled object triggers by bucket (kept by :class:`ObjectTriggerKind`).
        self._triggers: dict[str, dict[tuple[str, str, str], Trigger]] = {}
        self._pump = OutboxPump(store=store, queue=queue, directory=directory, wake=wake)
        self._loops_stopped = Counter(
            "nimbus_event_loops_stopped",
            "Object events not delivered because their chain (a function writing objects that "
            "trigger functions) got deeper than NIMBUS_MAX_EVENT_DEPTH",
            ["namespace", "function"],
            registry=metrics.registry,
        )

    # ---- triggers ------------------------------------------------------------------------
    def trigger_changed(self, trigger: Trigger) -> None:
        self.trigger_removed(trigger)
        if trigger.enabled:
            bucket = str(trigger.config.get("bucket"))
            key = (trigger.namespace, trigger.function, trigger.name)
            self._triggers.setdefault(bucket, {})[key] = trigger

    def trigger_removed(self, trigger: Trigger) -> None:
        key = (trigger.namespace, trigger.function, trigger.name)
        for bucket, found in list(self._triggers.items()):
            if found.pop(key, None) is not None and not found:
                del self._triggers[bucket]

    def _planner(self, caller: Caller, bucket: Bucket) -> Planner:
        """What a change in ``bucket`` sends: one event per matching trigger of its
        namespace (a snapshot of the triggers, taken now)."""
        triggers = tuple(
            t
            for t in self._triggers.get(bucket.name, {}).values()
            if t.namespace == bucket.namespace
        )
        if not triggers:
            return lambda _change: ()
        owner = account_id(bucket.namespace)
        limit = self.max_event_depth

        def plan(change: Change) -> list[Notification]:
            out = []
            for trigger in triggers:
                if not events.matches(trigger, change):
                    continue
                if trigger.config.get("flavour") == "scf":
                    payload = events.cos_payload(
                        change, trigger, caller.source_ip, caller.request_id
                    )
                else:
                    record = events.s3_record(
                        change,
                        configuration_id=trigger.name,
                        owner=owner,
                        principal=caller.principal or owner,
                        source_ip=caller.source_ip,
                        request_id=caller.request_id,
                    )
                    payload = events.event_payload(record)
                stopped = None
                if change.depth > limit:
                    stopped = (
                        f"event chain depth {change.depth} exceeds NIMBUS_MAX_EVENT_DEPTH="
                        f"{limit}: {change.event_name} of {change.info.bucket}/"
                        f"{change.info.key} was written by "
                        f"{caller.function or 'a function'} while it handled an object event"
                    )
                out.append(
                    Notification(
                        id=events.event_id(trigger, change),
                        namespace=trigger.namespace,
                        function=trigger.function,
                        qualifier=trigger.qualifier,
                        payload=payload,
                        depth=change.depth,
                        stopped=stopped,
                    )
                )
            return out

        return plan

    def _after(self, committed: Sequence[Committed]) -> None:
        """After a commit: free replaced blobs (in the caller's thread), start the pump,
        report loops that were stopped."""
        sent = False
        for c in committed:
            for note in c.notifications:
                if note.stopped is None:
                    sent = True
                    continue
                self._loops_stopped.labels(note.namespace, note.function).inc()
                log.warning(
                    "%s/%s: object event not delivered: %s",
                    note.namespace,
                    note.function,
                    note.stopped,
                )
                self._logs.emit(
                    LogLine(
                        time.time(),
                        note.namespace,
                        note.function,
                        "platform",
                        note.id,
                        "platform",
                        f"object event not delivered (loop stopped): {note.stopped}. A function "
                        "that writes into the bucket that triggers it should write under "
                        "another prefix or suffix than its trigger's, or into another bucket.",
                    )
                )
        if sent:
            self._pump.kick()

    # ---- access ------------------------------------------------------------------------
    async def bucket(self, caller: Caller, name: str, *, write: bool) -> Bucket:
        """The bucket, if the caller may read it (and write, when ``write``)."""
        if write and not caller.writes:
            raise access_denied(
                "Access Denied: this key may only read objects (invoker keys are read-only; "
                "use a developer key to write)"
            )
        found = await asyncio.to_thread(self.store.bucket, name)
        if found is None:
            raise no_such_bucket(name)
        if found.namespace != caller.namespace and not caller.every_namespace:
            raise access_denied(
                f"Access Denied: bucket {name!r} belongs to another namespace than "
                f"{caller.namespace!r}"
            )
        return found

    async def list_buckets(self, caller: Caller) -> list[Bucket]:
        return await asyncio.to_thread(self.store.buckets, caller.namespace)

    async def create_bucket(self, caller: Caller, name: str) -> Bucket:
        check_bucket_name(name)
        if not caller.writes:
            raise access_denied("Access Denied: this key may only read (it is an invoker key)")
        return await asyncio.to_thread(
            self.store.create_bucket, name, caller.namespace, time.time()
        )

    async def refuse_namespace_delete(self, namespace: str) -> None:
        """A namespace that owns buckets is not deleted (its buckets would be left without
        an owner)."""
        owned = await asyncio.to_thread(self.store.buckets, namespace)
        if owned:
            names = ", ".join(b.name for b in owned[:5]) + (", ..." if len(owned) > 5 else "")
            raise NamespaceNotEmptyError(
                f"namespace {namespace!r} still owns {len(owned)} object storage bucket(s) "
                f"({names}); empty and delete them first (`nimbus --namespace {namespace} "
                "bucket delete NAME`)",
                buckets=len(owned),
            )

    async def delete_bucket(self, caller: Caller, name: str) -> None:
        await self.bucket(caller, name, write=True)
        freed = await asyncio.to_thread(self.store.delete_bucket, name)
        await asyncio.to_thread(self.store.unlink, freed)

    # ---- reading -------------------------------------------------------------------------
    async def head(self, caller: Caller, bucket: str, key: str) -> ObjectInfo:
        await self.bucket(caller, bucket, write=False)
        info = await asyncio.to_thread(self.store.head, bucket, check_key(key))
        if info is None:
            raise no_such_key(bucket, key)
        return info

    async def list_objects(
        self,
        caller: Caller,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        after: str | None,
        max_keys: int,
    ) -> Listing:
        await self.bucket(caller, bucket, write=False)
        return await asyncio.to_thread(
            self.store.list_objects,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            after=after,
            max_keys=max_keys,
        )

    # ---- writing -------------------------------------------------------------------------
    async def receive(
        self, chunks: AsyncIterator[bytes], *, sha256: bool, checksums: Sequence[str] = ()
    ) -> Received:
        """A body into a temp file of the store (see :func:`nimbus.objects.body.receive`),
        at most ``max_put_bytes``."""
        return await body.receive(
            chunks,
            self.store.temp_path(),
            limit=self.max_put_bytes,
            sha256=sha256,
            checksums=checksums,
        )

    def discard(self, received: Received) -> None:
        received.discard()

    async def put(
        self,
        caller: Caller,
        bucket: Bucket,
        key: str,
        received: Received,
        *,
        content_type: str,
        metadata: dict[str, str],
        headers: dict[str, str],
    ) -> ObjectInfo:
        """Commit a received body as ``key`` (the caller checked access and digests)."""
        check_metadata(metadata)
        info = ObjectInfo(
            bucket=bucket.name,
            key=key,
            size=received.size,
            etag=received.md5.hex(),
            content_type=content_type,
            metadata=metadata,
            headers=headers,
        )
        plan = self._planner(caller, bucket)

        def commit() -> Committed:
            blob = self.store.adopt(received.path)
            return self._put_blob(_with_blob(info, blob), "ObjectCreated:Put", caller, plan)

        done = await asyncio.to_thread(commit)
        self._after([done])
        return done.info

    def _put_blob(
        self, info: ObjectInfo, event_name: str, caller: Caller, plan: Planner
    ) -> Committed:
        """Point the key at ``info.blob`` (already in the store) and plan its events, in a
        thread: the blob is unlinked again if that fails, the one it replaced once it is
        done."""
        try:
            done = self.store.put(
                info, event_name=event_name, cause=caller.cause, plan=plan, now=time.time()
            )
        except BaseException:
            self.store.unlink((info.blob,))
            raise
        self.store.unlink(done.freed)
        return done

    async def copy(
        self,
        caller: Caller,
        source: ObjectInfo,
        target: Bucket,
        key: str,
        *,
        replace_metadata: tuple[str, dict[str, str], dict[str, str]] | None,
    ) -> ObjectInfo:
        """Copy an object (the caller read it) to ``target``/``key``: a hard link, no bytes
        copied. ``replace_metadata``: (content type, metadata, headers) instead of the
        source's."""
        content_type, metadata, headers = replace_metadata or (
            source.content_type,
            source.metadata,
            source.headers,
        )
        check_metadata(metadata)
        plan = self._planner(caller, target)

        def commit() -> Committed:
            blob = self.store.link(source.blob)
            info = ObjectInfo(
                bucket=target.name,
                key=key,
                size=source.size,
                etag=source.etag,
                content_type=content_type,
                metadata=metadata,
                headers=headers,
                blob=blob,
            )
            return self._put_blob(info, "ObjectCreated:Copy", caller, plan)

        try:
            done = await asyncio.to_thread(commit)
        except FileNotFoundError:  # the source was deleted meanwhile
            raise no_such_key(source.bucket, source.key) from None
        self._after([done])
        return done.info

    async def delete(self, caller: Caller, bucket: Bucket, keys: Sequence[str]) -> list[str]:
        """Delete keys (missing ones are no error, as on S3); the keys that existed."""
        plan = self._planner(caller, bucket)

        def commit() -> list[Committed]:
            done = self.store.delete(
                bucket.name, keys, cause=caller.cause, plan=plan, now=time.time()
            )
            for c in done:
                self.store.unlink(c.freed)
            return done

        done = await asyncio.to_thread(commit)
        self._after(done)
        return [c.info.key for c in done]

    # ---- multipart uploads -----------------------------------------------------------------
    async def create_upload(
        self,
        bucket: Bucket,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        headers: dict[str, str],
    ) -> Upload:
        check_metadata(metadata)
        return await asyncio.to_thread(
            self.store.create_upload,
            bucket.name,
            check_key(key),
            content_type=content_type,
            metadata=metadata,
            headers=headers,
            now=time.time(),
        )

    async def upload(self, bucket: Bucket, key: str, upload_id: str) -> Upload:
        found = await asyncio.to_thread(self.store.upload, upload_id)
        if found is None or found.bucket != bucket.name or found.key != key:
            raise S3Error(
                "NoSuchUpload",
                "The specified multipart upload does not exist: it was completed or aborted, or "
                "the upload id is wrong.",
                UploadId=upload_id,
            )
        return found

    async def put_part(self, upload: Upload, number: int, received: Received) -> Part:
        def commit() -> Part:
            blob = self.store.adopt(received.path)
            part = Part(number, received.size, received.md5.hex(), time.time(), blob)
            try:
                freed = self.store.put_part(upload.id, part)
            except BaseException:
                self.store.unlink((blob,))
                raise
            self.store.unlink(freed)
            return part

        return await asyncio.to_thread(commit)

    async def parts(self, upload: Upload, *, after: int, limit: int) -> list[Part]:
        return await asyncio.to_thread(self.store.parts, upload.id, after=after, limit=limit)

    async def complete(
        self, caller: Caller, bucket: Bucket, upload: Upload, chosen: Sequence[tuple[int, str]]
    ) -> ObjectInfo:
        """Assemble the chosen parts, in order, into the object (copied into one file, so
        reads stay simple), and commit it."""
        numbers = [n for n, _ in chosen]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise S3Error(
                "InvalidPartOrder",
                "The list of parts was not in ascending order: list them by PartNumber, each once.",
            )
        have = {p.number: p for p in await asyncio.to_thread(self.store.parts, upload.id)}
        used: list[Part] = []
        for number, tag in chosen:
            part = have.get(number)
            if part is None or part.etag != tag:
                raise S3Error(
                    "InvalidPart",
                    f"One or more of the specified parts could not be found: part {number} "
                    "was not uploaded, or its ETag is not the one given.",
                    PartNumber=str(number),
                    ETag=tag,
                )
            used.append(part)
        for part in used[:-1]:
            if part.size < MIN_PART_BYTES:
                raise S3Error(
                    "EntityTooSmall",
                    f"Your proposed upload is smaller than the minimum allowed object size: every "
                    f"part but the last must be at least {MIN_PART_BYTES} bytes (part "
                    f"{part.number} has {part.size}).",
                )
        digest = hashlib.md5(usedforsecurity=False)
        for part in used:
            digest.update(bytes.fromhex(part.etag))
        info = ObjectInfo(
            bucket=bucket.name,
            key=upload.key,
            size=sum(p.size for p in used),
            etag=f"{digest.hexdigest()}-{len(used)}",
            content_type=upload.content_type,
            metadata=upload.metadata,
            headers=upload.headers,
        )
        plan = self._planner(caller, bucket)
        store = self.store

        def assemble_and_commit() -> Committed:
            temp = store.temp_path()
            try:
                with temp.open("wb") as out:
                    for part in used:
                        with store.path(part.blob).open("rb") as src:
                            shutil.copyfileobj(src, out, 1024 * 1024)
                    out.flush()
                    os.fsync(out.fileno())
                blob = store.adopt(temp)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
                raise
            try:
                done = store.complete(
                    upload,
                    used,
                    _with_blob(info, blob),
                    cause=caller.cause,
                    plan=plan,
                    now=time.time(),
                )
            except BaseException:
                store.unlink((blob,))
                raise
            store.unlink(done.freed)
            return done

        done = await asyncio.to_thread(assemble_and_commit)
        self._after([done])
        return done.info

    async def abort(self, upload: Upload) -> None:
        def run() -> None:
            self.store.unlink(self.store.abort(upload.id))

        await asyncio.to_thread(run)

    # ---- the outbox pump ---------------------------------------------------------------------
    async def start(self) -> None:
        removed = await asyncio.to_thread(self.store.sweep)
        if removed:
            log.info("object storage: removed %d files a crash left behind", removed)
        self._pump.start()

    async def stop(self) -> None:
        """Stop moving events (what is left in the outbox moves at the next start)."""
        await self._pump.stop()

    def close(self) -> None:
        self.store.close()


def _with_blob(info: ObjectInfo, blob: str) -> ObjectInfo:
    return replace(info, blob=blob)


def check_metadata(metadata: dict[str, str]) -> None:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise S3Error(
            "MetadataTooLarge",
            f"Your metadata headers exceed the maximum allowed metadata size: "
            f"{size} > {MAX_METADATA_BYTES} bytes of x-amz-meta-* names and values.",
        )
