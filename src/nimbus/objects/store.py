"""Objects on local disk, their metadata and their events in one SQLite database.

Layout under the storage root (``<data dir>/objects``)::

    meta.db           buckets, objects, multipart uploads and parts, the event outbox
    blobs/ab/<id>     one immutable file per object body or uploaded part
    tmp/<id>          bodies being received (deleted at start: never committed)

A body is written to ``tmp/``, fsynced, renamed into ``blobs/`` and only then
committed (one SQLite transaction that points the object's row at the blob). A
crash before the commit leaves an unreferenced blob, which :meth:`ObjectStore.sweep`
deletes at the next start; a crash after it leaves the new object. Readers open
the blob a row points to; blobs are never changed in place, so an overwrite or a
delete (which unlinks the old blob after its commit) never disturbs a reader that
already has the file open.

Events are decided in the same transaction: the caller passes a *planner* that
turns the committed :class:`Change` into :class:`Notification` rows, which are
inserted into the ``outbox`` table with the object's row. The service moves them
into the durable queue afterwards (see :mod:`nimbus.objects.service`); so an
object is never committed without its events, and an event never names an object
that was not committed.

Every method is synchronous and short, and serialised by one lock; async callers
use ``asyncio.to_thread``. ``synchronous=NORMAL`` in WAL mode: a killed process
loses nothing committed (a power loss may lose the newest transactions).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nimbus.objects.errors import S3Error, no_such_bucket
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS buckets_by_namespace ON buckets (namespace, name);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    meta TEXT NOT NULL,
    headers TEXT NOT NULL,
    modified REAL NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    content_type TEXT NOT NULL,
    meta TEXT NOT NULL,
    headers TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_bucket ON uploads (bucket, key);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified REAL NOT NULL,
    PRIMARY KEY (upload_id, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    depth INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chain (
    event_id TEXT PRIMARY KEY,
    depth INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_OBJECT_COLUMNS = "bucket, key, blob, size, etag, content_type, meta, headers, modified, seq"


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        for path in (root, self.blobs, self.tmp):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            root / "meta.db", timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # ---- files ---------------------------------------------------------------------------
    def temp_path(self) -> Path:
        """A fresh file name to receive a body in (the caller creates the file)."""
        return self.tmp / uuid.uuid4().hex

    def adopt(self, temp: Path) -> str:
        """Move a received (and fsynced) body into ``blobs/``; its name relative to the root."""
        name = uuid.uuid4().hex
        rel = f"blobs/{name[:2]}/{name}"
        target = self.root / rel
        target.parent.mkdir(exist_ok=True)
        os.replace(temp, target)
        return rel

    def link(self, blob: str) -> str:
        """A second name for an existing blob (a copy costs no bytes: blobs never change)."""
        name = uuid.uuid4().hex
        rel = f"blobs/{name[:2]}/{name}"
        target = self.root / rel
        target.parent.mkdir(exist_ok=True)
        os.link(self.root / blob, target)
        return rel

    def path(self, blob: str) -> Path:
        return self.root / blob

    def unlink(self, blobs: Sequence[str]) -> None:
        for blob in blobs:
            with contextlib.suppress(FileNotFoundError):
                (self.root / blob).unlink()

    def sweep(self) -> int:
        """Delete what a crash left: bodies being received and blobs no row points to.
        Call before serving (at start). Returns how many files went."""
        removed = 0
        for temp in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
                removed += 1
        used = {
            row[0]
            for row in self._read("SELECT blob FROM objects UNION ALL SELECT blob FROM parts")
        }
        for directory in self.blobs.iterdir():
            for blob in directory.iterdir():
                rel = f"blobs/{directory.name}/{blob.name}"
                if rel not in used:
                    with contextlib.suppress(FileNotFoundError):
                        blob.unlink()
                        removed += 1
        return removed

    # ---- buckets -------------------------------------------------------------------------
    def create_bucket(self, name: str, namespace: str, now: float) -> Bucket:
        with self._tx() as db:
            row = db.execute("SELECT namespace FROM buckets WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row["namespace"] == namespace:
                    raise S3Error(
                        "BucketAlreadyOwnedByYou",
                        "Your previous request to create the named bucket succeeded and you "
                        "already own it.",
                        BucketName=name,
                    )
                raise S3Error(
                    "BucketAlreadyExists",
                    "The requested bucket name is not available: bucket names are shared by "
                    "every namespace of this server. Select a different name and try again.",
                    BucketName=name,
                )
            db.execute(
                "INSERT INTO buckets (name, namespace, created_at) VALUES (?, ?, ?)",
                (name, namespace, now),
            )
        return Bucket(name, namespace, now)

    def bucket(self, name: str) -> Bucket | None:
        rows = self._read("SELECT * FROM buckets WHERE name = ?", (name,))
        return (
            Bucket(rows[0]["name"], rows[0]["namespace"], rows[0]["created_at"]) if rows else None
        )

    def buckets(self, namespace: str | None = None) -> list[Bucket]:
        if namespace is None:
            rows = self._read("SELECT * FROM buckets ORDER BY name")
        else:
            rows = self._read(
                "SELECT * FROM buckets WHERE namespace = ? ORDER BY name", (namespace,)
            )
        return [Bucket(r["name"], r["namespace"], r["created_at"]) for r in rows]

    def bucket_stats(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(objects, bytes) of each of these buckets that has objects."""
        if not names:
            return {}
        marks = ", ".join("?" for _ in names)
        rows = self._read(
            f"SELECT bucket, COUNT(*), COALESCE(SUM(size), 0) FROM objects "
            f"WHERE bucket IN ({marks}) GROUP BY bucket",
            list(names),
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def delete_bucket(self, name: str) -> tuple[str, ...]:
        """Delete an empty bucket (its unfinished multipart uploads go with it); the blobs
        freed."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM buckets WHERE name = ?", (name,)).fetchone() is None:
                raise no_such_bucket(name)
            if db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone():
                raise S3Error(
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty: delete its objects first "
                    "(`aws s3 rm s3://BUCKET --recursive`).",
                    BucketName=name,
                )
            freed = [
                row[0]
                for row in db.execute(
                    "SELECT p.blob FROM parts p JOIN uploads u ON u.id = p.upload_id "
                    "WHERE u.bucket = ?",
                    (name,),
                )
            ]
            db.execute(
                "DELETE FROM parts WHERE upload_id IN (SELECT id FROM uploads WHERE bucket = ?)",
                (name,),
            )
            db.execute("DELETE FROM uploads WHERE bucket = ?", (name,))
            db.execute("DELETE FROM buckets WHERE name = ?", (name,))
        return tuple(freed)

    # ---- objects -------------------------------------------------------------------------
    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        rows = self._read(
            f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ?",
            (bucket, _k(key)),
        )
        return _info(rows[0]) if rows else None

    def put(
        self,
        info: ObjectInfo,
        *,
        event_name: str,
        cause: str | None,
        plan: Planner,
        now: float,
    ) -> Committed:
        """Point ``info.key`` at ``info.blob`` (already adopted) and plan its events, in one
        transaction; the object it replaced, if any, is freed."""
        with self._tx() as db:
            return self._put(db, info, event_name=event_name, cause=cause, plan=plan, now=now)

    def _put(
        self,
        db: sqlite3.Connection,
        info: ObjectInfo,
        *,
        event_name: str,
        cause: str | None,
        plan: Planner,
        now: float,
    ) -> Committed:
        self._need_bucket(db, info.bucket)
        old = db.execute(
            "SELECT blob FROM objects WHERE bucket = ? AND key = ?",
            (info.bucket, _k(info.key)),
        ).fetchone()
        stored = replace(info, modified=now, seq=_next_seq(db))
        db.execute(
            f"INSERT OR REPLACE INTO objects ({_OBJECT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored.bucket,
                _k(stored.key),
                stored.blob,
                stored.size,
                stored.etag,
                stored.content_type,
                json.dumps(stored.metadata),
                json.dumps(stored.headers),
                stored.modified,
                stored.seq,
            ),
        )
        change = Change(event_name, stored, _depth(db, cause) + 1, now)
        notes = _record(db, plan(change), now)
        freed = (old["blob"],) if old is not None and old["blob"] != stored.blob else ()
        return Committed(stored, notes, freed)

    def delete(
        self, bucket: str, keys: Sequence[str], *, cause: str | None, plan: Planner, now: float
    ) -> list[Committed]:
        """Delete these keys (missing ones are skipped) in one transaction."""
        done: list[Committed] = []
        with self._tx() as db:
            self._need_bucket(db, bucket)
            depth = _depth(db, cause) + 1
            for key in keys:
                row = db.execute(
                    f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ?",
                    (bucket, _k(key)),
                ).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, _k(key)))
                gone = replace(_info(row), seq=_next_seq(db))
                notes = _record(db, plan(Change("ObjectRemoved:Delete", gone, depth, now)), now)
                done.append(Committed(gone, notes, (gone.blob,)))
        return done

    def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str | None, max_keys: int
    ) -> Listing:
        """Keys of ``bucket`` starting with ``prefix``, after ``after``, in UTF-8 binary
        order; with a delimiter, keys that have it after the prefix are rolled up into
        common prefixes (each counts as one of ``max_keys``)."""
        p = _k(prefix)
        d = _k(delimiter)
        upper = _successor(p)
        # Where the scan stands: (bound, inclusive).
        start: tuple[bytes, bool] = (p, True)
        if after is not None:
            a = _k(after)
            if d and a.startswith(p) and a.find(d, len(p)) >= 0:
                skip = _successor(a)  # `after` was a common prefix: skip what it holds
                if skip is None:
                    return Listing([], [], False, None)
                a, inclusive = skip, True
            else:
                inclusive = False
            if a > p or (a == p and not inclusive):
                start = (a, inclusive)
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last: str | None = None
        with self._lock:
            self._db.execute("BEGIN")
            try:
                while True:
                    bound, inclusive = start
                    sql = (
                        f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = ? "
                        f"AND key {'>=' if inclusive else '>'} ?"
                    )
                    params: list[Any] = [bucket, bound]
                    if upper is not None:
                        sql += " AND key < ?"
                        params.append(upper)
                    row = None
                    full = len(objects) + len(prefixes) >= max_keys
                    batch = 1 if full else min(1000, max_keys - len(objects) - len(prefixes))
                    rows = self._db.execute(
                        sql + " ORDER BY key LIMIT ?", (*params, batch)
                    ).fetchall()
                    if not rows:
                        return Listing(objects, prefixes, False, last)
                    if full:
                        return Listing(objects, prefixes, True, last)
                    restart = False
                    for row in rows:
                        key: bytes = row["key"]
                        cut = key.find(d, len(p)) if d else -1
                        if cut >= 0:
                            common = key[: cut + len(d)]
                            prefixes.append(_s(common))
                            last = _s(common)
                            skip = _successor(common)
                            if skip is None:
                                return Listing(objects, prefixes, False, last)
                            start = (skip, True)
                            restart = True
                            break
                        objects.append(_info(row))
                        last = _s(key)
                        start = (key, False)
                    if restart:
                        continue
            finally:
                self._db.execute("COMMIT")

    # ---- multipart uploads ---------------------------------------------------------------
    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        headers: dict[str, str],
        now: float,
    ) -> Upload:
        upload = Upload(uuid.uuid4().hex, bucket, key, content_type, metadata, headers, now)
        with self._tx() as db:
            self._need_bucket(db, bucket)
            db.execute(
                "INSERT INTO uploads (id, bucket, key, content_type, meta, headers, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    upload.id,
                    bucket,
                    _k(key),
                    content_type,
                    json.dumps(metadata),
                    json.dumps(headers),
                    now,
                ),
            )
        return upload

    def upload(self, upload_id: str) -> Upload | None:
        rows = self._read("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        if not rows:
            return None
        r = rows[0]
        return Upload(
            r["id"],
            r["bucket"],
            _s(r["key"]),
            r["content_type"],
            json.loads(r["meta"]),
            json.loads(r["headers"]),
            r["created_at"],
        )

    def put_part(self, upload_id: str, part: Part) -> tuple[str, ...]:
        """Record a part (replacing one of the same number); the blobs freed. Raises
        ``NoSuchUpload`` when the upload was completed or aborted meanwhile."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM uploads WHERE id = ?", (upload_id,)).fetchone() is None:
                raise _no_such_upload(upload_id)
            old = db.execute(
                "SELECT blob FROM parts WHERE upload_id = ? AND number = ?",
                (upload_id, part.number),
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO parts (upload_id, number, blob, size, etag, modified) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (upload_id, part.number, part.blob, part.size, part.etag, part.modified),
            )
        return (old["blob"],) if old is not None else ()

    def parts(self, upload_id: str, *, after: int = 0, limit: int = 10_000) -> list[Part]:
        rows = self._read(
            "SELECT * FROM parts WHERE upload_id = ? AND number > ? ORDER BY number LIMIT ?",
            (upload_id, after, limit),
        )
        return [Part(r["number"], r["size"], r["etag"], r["modified"], r["blob"]) for r in rows]

    def complete(
        self,
        upload: Upload,
        used: Sequence[Part],
        info: ObjectInfo,
        *,
        cause: str | None,
        plan: Planner,
        now: float,
    ) -> Committed:
        """Commit the object assembled from ``used`` parts (its blob already adopted) and end
        the upload, in one transaction; every part blob and the replaced object's blob are freed. Raises
        ``InvalidPart`` when a part changed meanwhile, ``NoSuchUpload`` when it ended."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM uploads WHERE id = ?", (upload.id,)).fetchone() is None:
                raise _no_such_upload(upload.id)
            current = {
                r["number"]: r["etag"]
                for r in db.execute(
                    "SELECT number, etag FROM parts WHERE upload_id = ?", (upload.id,)
                )
            }
            for part in used:
                if current.get(part.number) != part.etag:
                    raise S3Error(
                        "InvalidPart",
                        f"part {part.number} was uploaded again while the upload was being "
                        "completed; complete it again with the new part's ETag",
                    )
            parts = [
                r[0] for r in db.execute("SELECT blob FROM parts WHERE upload_id = ?", (upload.id,))
            ]
            db.execute("DELETE FROM parts WHERE upload_id = ?", (upload.id,))
            db.execute("DELETE FROM uploads WHERE id = ?", (upload.id,))
            committed = self._put(
                db,
                info,
                event_name="ObjectCreated:CompleteMultipartUpload",
                cause=cause,
                plan=plan,
                now=now,
            )
        return replace(committed, freed=(*committed.freed, *parts))

    def abort(self, upload_id: str) -> tuple[str, ...]:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM uploads WHERE id = ?", (upload_id,)).fetchone() is None:
                raise _no_such_upload(upload_id)
            freed = [
                r[0] for r in db.execute("SELECT blob FROM parts WHERE upload_id = ?", (upload_id,))
            ]
            db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        return tuple(freed)

    # ---- the event outbox ----------------------------------------------------------------
    def pending(self, limit: int = 100) -> list[Notification]:
        """Notifications committed but not yet moved into the queue, oldest first."""
        rows = self._read("SELECT * FROM outbox ORDER BY created_at, id LIMIT ?", (limit,))
        return [
            Notification(
                r["id"], r["namespace"], r["function"], r["qualifier"], r["payload"], r["depth"]
            )
            for r in rows
        ]

    def delivered(self, ids: Sequence[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def depth_of(self, event_id: str) -> int:
        """The chain depth of an event an object change caused (0: not such an event)."""
        rows = self._read("SELECT depth FROM chain WHERE event_id = ?", (event_id,))
        return int(rows[0][0]) if rows else 0

    def prune_chain(self, before: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM chain WHERE created_at < ?", (before,)).rowcount

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def _need_bucket(db: sqlite3.Connection, bucket: str) -> None:
        if db.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
            raise no_such_bucket(bucket)


def _k(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _info(row: sqlite3.Row) -> ObjectInfo:
    return ObjectInfo(
        bucket=row["bucket"],
        key=_s(row["key"]),
        size=row["size"],
        etag=row["etag"],
        content_type=row["content_type"],
        metadata=json.loads(row["meta"]),
        headers=json.loads(row["headers"]),
        modified=row["modified"],
        seq=row["seq"],
        blob=row["blob"],
    )


def _next_seq(db: sqlite3.Connection) -> int:
    row = db.execute(
        "INSERT INTO counters (name, value) VALUES ('seq', 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value"
    ).fetchone()
    return int(row[0])


def _depth(db: sqlite3.Connection, cause: str | None) -> int:
    if cause is None:
        return 0
    row = db.execute("SELECT depth FROM chain WHERE event_id = ?", (cause,)).fetchone()
    return int(row[0]) if row is not None else 0


def _record(
    db: sqlite3.Connection, notes: Sequence[Notification], now: float
) -> tuple[Notification, ...]:
    for note in notes:
        if note.stopped is not None:
            continue
        db.execute(
            "INSERT OR IGNORE INTO outbox (id, namespace, function, qualifier, payload, depth, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (note.id, note.namespace, note.function, note.qualifier, note.payload, note.depth, now),
        )
        db.execute(
            "INSERT OR IGNORE INTO chain (event_id, depth, created_at) VALUES (?, ?, ?)",
            (note.id, note.depth, now),
        )
    return tuple(notes)


def _no_such_upload(upload_id: str) -> S3Error:
    return S3Error(
        "NoSuchUpload",
        "The specified multipart upload does not exist: it was completed or aborted, or the "
        "upload id is wrong.",
        UploadId=upload_id,
    )
