"""The S3 operations: a parsed request and an authenticated caller in, an answer out.

Buckets (ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
ListObjects v1 and v2, DeleteObjects), objects (PutObject, GetObject with ranges
and conditions, HeadObject, DeleteObject, CopyObject) and multipart uploads
(Create, UploadPart, ListParts, Complete, Abort). Anything else names a feature
Nimbus does not serve and answers ``NotImplemented``. The doors that
authenticate requests and send answers are in :mod:`nimbus.objects.s3_api`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import Message, Receive

from nimbus.compat.shapes import account_id
from nimbus.objects import xml
from nimbus.objects.body import Received, check_content_md5
from nimbus.objects.chunked import ChunkedDecoder
from nimbus.objects.conditions import check_conditions, etag_in, http_date, parse_range
from nimbus.objects.errors import S3Error
from nimbus.objects.model import ObjectInfo
from nimbus.objects.names import check_bucket_name, check_key
from nimbus.objects.service import Caller, ObjectService
from nimbus.objects.sigv4s3 import (
    PayloadRule,
)

PREFIX = "/s3"
#: Largest XML request body (DeleteObjects, CompleteMultipartUpload, CreateBucket).
MAX_XML_BYTES = 4 * 1024 * 1024
#: Objects up to this size are read in one go; larger ones stream in pieces this big.
_READ_PIECE = 1024 * 1024
#: Stored with an object and given back on GET/HEAD.
STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
#: Query parameters naming S3 features Nimbus does not serve (answered NotImplemented).
_UNSERVED = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "tagging",
        "torrent",
        "versioning",
        "versions",
        "website",
    }
)
_CHECKSUMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
_COMPUTED_CHECKSUMS = ("crc32", "sha1", "sha256")

Headers = list[tuple[bytes, bytes]]


class TrackedReceive:
    """An ASGI ``receive`` that remembers whether the body was read to its end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message


@dataclass
class S3Request:
    method: str
    bucket: str | None
    key: str | None
    query: dict[str, str]
    headers: dict[str, str]
    request_id: str
    receive: Receive
    rule: PayloadRule

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def body_left_unread(self) -> bool:
        """The request has a body this answer did not read (its connection must close: the
        client may not have sent it, waiting for ``100 Continue``)."""
        length = self.headers.get("content-length", "0")
        has_body = "transfer-encoding" in self.headers or (length.isdigit() and int(length) > 0)
        return has_body and not (isinstance(self.receive, TrackedReceive) and self.receive.done)

    @property
    def resource(self) -> str:
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}" + (f"/{self.key}" if self.key is not None else "")


@dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes | AsyncIterator[bytes] = b""


def header(name: str, value: object) -> tuple[bytes, bytes]:
    return name.encode("latin-1"), str(value).encode("latin-1", "replace")


def _xml(body: bytes, status: int = 200) -> Answer:
    return Answer(status, [(b"content-type", b"application/xml")], body)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16].upper()


class S3Operations:
    """The operations, given an authenticated :class:`Caller` and a parsed request."""

    def __init__(self, service: ObjectService, base_url: str) -> None:
        self.service = service
        self.base_url = base_url

    async def dispatch(self, request: S3Request, caller: Caller) -> Answer:
        method, q = request.method, request.query
        unserved = _UNSERVED & set(q)
        if unserved:
            raise S3Error(
                "NotImplemented",
                f"Nimbus's object storage does not serve {', '.join(sorted(unserved))}; see "
                "docs/object-storage.md for the operations it serves",
            )
        if request.bucket is None:
            if method == "GET":
                return await self.list_buckets(caller)
            raise _not_allowed(method, "the service")
        if request.key is None:
            return await self._bucket_op(request, caller)
        check_key(request.key)
        if method == "PUT":
            if "uploadId" in q or "partNumber" in q:
                if request.header("x-amz-copy-source"):
                    raise S3Error("NotImplemented", "UploadPartCopy is not served; use UploadPart")
                return await self.upload_part(request, caller)
            if request.header("x-amz-copy-source"):
                return await self.copy_object(request, caller)
            return await self.put_object(request, caller)
        if method in ("GET", "HEAD"):
            if "uploadId" in q and method == "GET":
                return await self.list_parts(request, caller)
            return await self.get_object(request, caller, head=method == "HEAD")
        if method == "DELETE":
            if "uploadId" in q:
                return await self.abort_upload(request, caller)
            return await self.delete_object(request, caller)
        if method == "POST":
            if "uploads" in q:
                return await self.create_upload(request, caller)
            if "uploadId" in q:
                return await self.complete_upload(request, caller)
        raise _not_allowed(method, "an object")

    async def _bucket_op(self, request: S3Request, caller: Caller) -> Answer:
        method, q, name = request.method, request.query, request.bucket
        assert name is not None
        if method == "PUT":
            await _read_small(request)  # CreateBucketConfiguration: the region is ignored
            await self.service.create_bucket(caller, name)
            return Answer(200, [header("location", f"/{name}")])
        if method == "HEAD":
            check_bucket_name(name)
            await self.service.bucket(caller, name, write=False)
            return Answer(200, [header("x-amz-bucket-region", "us-east-1")])
        if method == "DELETE":
            check_bucket_name(name)
            await self.service.delete_bucket(caller, name)
            return Answer(204, [])
        if method == "GET":
            check_bucket_name(name)
            if "location" in q:
                await self.service.bucket(caller, name, write=False)
                return _xml(xml.location())
            if "uploads" in q:
                raise S3Error("NotImplemented", "ListMultipartUploads is not served")
            return await self.list_objects(request, caller, v2=q.get("list-type") == "2")
        if method == "POST" and "delete" in q:
            return await self.delete_objects(request, caller)
        raise _not_allowed(method, "a bucket")

    # ---- buckets ---------------------------------------------------------------------------
    async def list_buckets(self, caller: Caller) -> Answer:
        buckets = await self.service.list_buckets(caller)
        return _xml(xml.list_buckets(buckets, _owner(caller.namespace)))

    async def list_objects(self, request: S3Request, caller: Caller, *, v2: bool) -> Answer:
        q = request.query
        assert request.bucket is not None
        max_keys = _int_param(q, "max-keys", 1000, 0, 2**31 - 1)
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        url_encode = q.get("encoding-type", "") == "url"
        if q.get("encoding-type", "url") != "url":
            raise S3Error("InvalidArgument", "encoding-type may only be 'url'")
        token = q.get("continuation-token")
        after: str | None
        if v2:
            after = _decode_token(token) if token is not None else (q.get("start-after") or None)
        else:
            after = q.get("marker") or None
        listing = await self.service.list_objects(
            caller,
            request.bucket,
            prefix=prefix,
            delimiter=delimiter,
            after=after,
            max_keys=min(max_keys, 1000),
        )
        fetch_owner = not v2 or q.get("fetch-owner") == "true"
        bucket = await self.service.bucket(caller, request.bucket, write=False)
        body = xml.list_objects(
            v2=v2,
            bucket=request.bucket,
            prefix=prefix,
            delimiter=delimiter,
            max_keys=max_keys,
            url_encode=url_encode,
            objects=listing.objects,
            prefixes=listing.prefixes,
            truncated=listing.truncated,
            owner_xml=_owner(bucket.namespace) if fetch_owner else None,
            continuation=token,
            next_token=_encode_token(listing.last) if listing.truncated and listing.last else None,
            start_after=q.get("start-after") if v2 else None,
            marker=q.get("marker", ""),
            next_marker=listing.last if listing.truncated else None,
        )
        return _xml(body)

    # ---- objects ---------------------------------------------------------------------------
    async def put_object(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        bucket = await self.service.bucket(caller, request.bucket, write=True)
        _check_length(request, self.service.max_put_bytes)
        if request.header("if-none-match") == "*":
            existing = await asyncio.to_thread(self.service.store.head, bucket.name, request.key)
            if existing is not None:
                raise S3Error(
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold (If-None-Match: "
                    "* and the key exists)",
                    Condition="If-None-Match",
                )
        content_type, metadata, headers = _object_headers(request)
        received = await self._receive(request)
        try:
            info = await self.service.put(
                caller,
                bucket,
                request.key,
                received,
                content_type=content_type,
                metadata=metadata,
                headers=headers,
            )
        except BaseException:
            self.service.discard(received)
            raise
        return Answer(200, [header("etag", xml.etag(info.etag))])

    async def _receive(self, request: S3Request) -> Received:
        """The body into a temp file, every digest the request gives checked."""
        rule = request.rule
        wanted = [a for a in _COMPUTED_CHECKSUMS if request.header(f"x-amz-checksum-{a}")]
        trailer = (request.header("x-amz-trailer") or "").strip().lower()
        if trailer.startswith("x-amz-checksum-") and trailer[15:] in _COMPUTED_CHECKSUMS:
            wanted.append(trailer[15:])
        decoder = ChunkedDecoder(rule.signer) if rule.chunked else None
        received = await self.service.receive(
            _body(request.receive, decoder), sha256=rule.sha256 is not None, checksums=wanted
        )
        try:
            if rule.sha256 is not None and received.sha256 != rule.sha256:
                raise S3Error(
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                )
            declared = request.header("x-amz-decoded-content-length")
            if (
                decoder is not None
                and declared is not None
                and declared.isdigit()
                and int(declared) != received.size
            ):
                raise S3Error(
                    "IncompleteBody",
                    f"x-amz-decoded-content-length says {declared} bytes; the body had "
                    f"{received.size}",
                )
            check_content_md5(request.header("content-md5"), received)
            given = {a: request.header(f"x-amz-checksum-{a}") for a in _COMPUTED_CHECKSUMS}
            if decoder is not None:
                for name, text in decoder.trailers.items():
                    if name.startswith("x-amz-checksum-") and name[15:] in _COMPUTED_CHECKSUMS:
                        given[name[15:]] = text
            for algorithm, claimed in given.items():
                if claimed is not None and received.checksums.get(algorithm) != claimed.strip():
                    raise S3Error(
                        "BadDigest",
                        f"The {algorithm.upper()} you specified did not match the calculated "
                        "checksum.",
                    )
        except BaseException:
            self.service.discard(received)
            raise
        return received

    async def get_object(self, request: S3Request, caller: Caller, *, head: bool) -> Answer:
        assert request.bucket is not None and request.key is not None
        if "partNumber" in request.query:
            raise S3Error("NotImplemented", "GetObject and HeadObject by partNumber are not served")
        info = await self.service.head(caller, request.bucket, request.key)
        headers = _info_headers(info)
        check_conditions(request.headers, info)
        for name in (*STORED_HEADERS, "content-type"):
            override = request.query.get(f"response-{name}")
            if override is not None:
                headers = [h for h in headers if h[0] != name.encode()] + [header(name, override)]
        start, end = 0, info.size - 1
        status = 200
        ranged = request.header("range")
        if ranged is not None:
            chosen = parse_range(ranged, info.size)
            if chosen is not None:
                start, end = chosen
                status = 206
                headers.append(header("content-range", f"bytes {start}-{end}/{info.size}"))
        length = max(0, end - start + 1)
        headers.append(header("content-length", length))
        if head:
            return Answer(status, headers)
        return Answer(status, headers, await self._open(caller, info, start, length))

    async def _open(
        self, caller: Caller, info: ObjectInfo, start: int, length: int
    ) -> bytes | AsyncIterator[bytes]:
        """The bytes (small objects) or a stream of them. A blob replaced between the head
        and the open is looked up once more."""
        store = self.service.store

        def open_blob(blob: str) -> tuple[Any, bytes | None]:
            f = store.path(blob).open("rb")
            if start:
                f.seek(start)
            if length <= _READ_PIECE:
                try:
                    return None, f.read(length)
                finally:
                    f.close()
            return f, None

        try:
            f, data = await asyncio.to_thread(open_blob, info.blob)
        except FileNotFoundError:
            fresh = await self.service.head(caller, info.bucket, info.key)
            if fresh.etag != info.etag or fresh.size != info.size:
                raise S3Error(
                    "PreconditionFailed",
                    "the object changed while it was being read; read it again",
                ) from None
            f, data = await asyncio.to_thread(open_blob, fresh.blob)
        if data is not None:
            return data

        async def stream() -> AsyncIterator[bytes]:
            left = length
            try:
                while left > 0:
                    piece = await asyncio.to_thread(f.read, min(_READ_PIECE, left))
                    if not piece:
                        break
                    left -= len(piece)
                    yield piece
            finally:
                f.close()

        return stream()

    async def delete_object(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        bucket = await self.service.bucket(caller, request.bucket, write=True)
        await self.service.delete(caller, bucket, [request.key])
        return Answer(204, [])

    async def delete_objects(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None
        bucket = await self.service.bucket(caller, request.bucket, write=True)
        keys, quiet = xml.parse_delete(await _read_small(request))
        valid: list[str] = []
        errors: list[tuple[str, S3Error]] = []
        for key in keys:
            try:
                valid.append(check_key(key))
            except S3Error as exc:
                errors.append((key, exc))
        await self.service.delete(caller, bucket, valid)
        return _xml(xml.delete_result([] if quiet else valid, errors))

    async def copy_object(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        source_bucket, source_key = _copy_source(request.header("x-amz-copy-source") or "")
        source = await self.service.head(caller, source_bucket, source_key)
        target = await self.service.bucket(caller, request.bucket, write=True)
        match = request.header("x-amz-copy-source-if-match")
        if match is not None and not etag_in(match, source.etag):
            raise S3Error("PreconditionFailed", "x-amz-copy-source-if-match did not hold")
        none_match = request.header("x-amz-copy-source-if-none-match")
        if none_match is not None and etag_in(none_match, source.etag):
            raise S3Error("PreconditionFailed", "x-amz-copy-source-if-none-match did not hold")
        directive = (request.header("x-amz-metadata-directive") or "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise S3Error("InvalidArgument", "x-amz-metadata-directive must be COPY or REPLACE")
        if directive == "COPY" and (source_bucket, source_key) == (request.bucket, request.key):
            raise S3Error(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata (use x-amz-metadata-directive: REPLACE)",
            )
        replace = _object_headers(request) if directive == "REPLACE" else None
        info = await self.service.copy(
            caller, source, target, request.key, replace_metadata=replace
        )
        return _xml(xml.copy_result(info))

    # ---- multipart uploads -------------------------------------------------------------------
    async def create_upload(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        bucket = await self.service.bucket(caller, request.bucket, write=True)
        content_type, metadata, headers = _object_headers(request)
        upload = await self.service.create_upload(
            bucket, request.key, content_type=content_type, metadata=metadata, headers=headers
        )
        return _xml(xml.initiate(upload))

    async def upload_part(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        bucket = await self.service.bucket(caller, request.bucket, write=True)
        number = _int_param(request.query, "partNumber", 0, 1, 10_000, required=True)
        upload = await self.service.upload(bucket, request.key, request.query.get("uploadId", ""))
        _check_length(request, self.service.max_put_bytes)
        received = await self._receive(request)
        try:
            part = await self.service.put_part(upload, number, received)
        except BaseException:
            self.service.discard(received)
            raise
        return Answer(200, [header("etag", xml.etag(part.etag))])

    async def list_parts(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        bucket = await self.service.bucket(caller, request.bucket, write=False)
        upload = await self.service.upload(bucket, request.key, request.query.get("uploadId", ""))
        max_parts = _int_param(request.query, "max-parts", 1000, 0, 1000)
        marker = _int_param(request.query, "part-number-marker", 0, 0, 10_000)
        parts = await self.service.parts(upload, after=marker, limit=max_parts + 1)
        truncated = len(parts) > max_parts
        body = xml.list_parts(
            upload,
            parts[:max_parts],
            marker=marker,
            max_parts=max_parts,
            truncated=truncated,
            owner_xml=_owner(bucket.namespace),
        )
        return _xml(body)

    async def complete_upload(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        bucket = await self.service.bucket(caller, request.bucket, write=True)
        upload = await self.service.upload(bucket, request.key, request.query.get("uploadId", ""))
        chosen = xml.parse_complete(await _read_small(request))
        info = await self.service.complete(caller, bucket, upload, chosen)
        location = f"{self.base_url}{PREFIX}/{bucket.name}/{info.key}"
        return _xml(xml.complete(location, info))

    async def abort_upload(self, request: S3Request, caller: Caller) -> Answer:
        assert request.bucket is not None and request.key is not None
        bucket = await self.service.bucket(caller, request.bucket, write=True)
        upload = await self.service.upload(bucket, request.key, request.query.get("uploadId", ""))
        await self.service.abort(upload)
        return Answer(204, [])


# ---- helpers -----------------------------------------------------------------------------------


def _not_allowed(method: str, what: str) -> S3Error:
    return S3Error(
        "MethodNotAllowed",
        f"The specified method is not allowed against this resource: {method} on {what}",
    )


def _owner(namespace: str) -> str:
    return xml.owner(account_id(namespace), namespace)


def _int_param(
    q: dict[str, str], name: str, default: int, low: int, high: int, *, required: bool = False
) -> int:
    text = q.get(name)
    if text is None:
        if required:
            raise S3Error("InvalidArgument", f"{name} is required")
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise S3Error("InvalidArgument", f"{name} must be an integer from {low} to {high}")
    return int(text)


def _encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


async def _body(receive: Receive, decoder: ChunkedDecoder | None) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise S3Error("IncompleteBody", "the client disconnected before the body ended")
        data = message.get("body", b"")
        if decoder is not None and data:
            data = decoder.feed(data)
        if data:
            yield data
        if not message.get("more_body", False):
            break
    if decoder is not None:
        decoder.finish()


async def _read_small(request: S3Request) -> bytes:
    """A request body that is XML (at most MAX_XML_BYTES), its digests checked."""
    rule = request.rule
    decoder = ChunkedDecoder(rule.signer) if rule.chunked else None
    chunks: list[bytes] = []
    size = 0
    async for chunk in _body(request.receive, decoder):
        size += len(chunk)
        if size > MAX_XML_BYTES:
            raise S3Error("MalformedXML", f"the XML body is larger than {MAX_XML_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if rule.sha256 is not None and hashlib.sha256(body).hexdigest() != rule.sha256:
        raise S3Error(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    return body


def _check_length(request: S3Request, limit: int) -> None:
    for name in ("x-amz-decoded-content-length", "content-length"):
        text = request.header(name)
        if text is not None and text.isdigit():
            if int(text) > limit:
                raise S3Error(
                    "EntityTooLarge",
                    f"Your proposed upload exceeds the maximum allowed size of {limit} bytes per "
                    "request (NIMBUS_MAX_PUT_OBJECT_BYTES); use a multipart upload",
                    MaxSizeAllowed=str(limit),
                )
            return


def _object_headers(request: S3Request) -> tuple[str, dict[str, str], dict[str, str]]:
    """(content type, user metadata, stored headers) of a write."""
    content_type = request.header("content-type") or "binary/octet-stream"
    metadata = {
        name[len("x-amz-meta-") :]: value
        for name, value in request.headers.items()
        if name.startswith("x-amz-meta-")
    }
    stored: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = request.header(name)
        if value is None:
            continue
        if name == "content-encoding":
            codings = [c.strip() for c in value.split(",") if c.strip() != "aws-chunked"]
            if not codings:
                continue
            value = ", ".join(codings)
        stored[name] = value
    return content_type, metadata, stored


def _info_headers(info: ObjectInfo) -> Headers:
    headers = [
        header("content-type", info.content_type),
        header("etag", xml.etag(info.etag)),
        header("last-modified", http_date(info.modified)),
        header("accept-ranges", "bytes"),
    ]
    headers += [header(name, value) for name, value in info.headers.items()]
    headers += [header(f"x-amz-meta-{name}", value) for name, value in info.metadata.items()]
    if "-" in info.etag:
        headers.append(header("x-amz-mp-parts-count", info.etag.rsplit("-", 1)[1]))
    return headers


def _copy_source(header: str) -> tuple[str, str]:
    text = header.split("?versionId=", 1)[0]
    decoded = unquote_to_bytes(text).decode("utf-8", "replace").lstrip("/")
    bucket, slash, key = decoded.partition("/")
    if not slash or not key:
        raise S3Error("InvalidArgument", "x-amz-copy-source must be BUCKET/KEY (URL-encoded)")
    return check_bucket_name(bucket), check_key(key)
