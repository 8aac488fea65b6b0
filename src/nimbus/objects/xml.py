"""The XML bodies of the S3 API: rendered by hand (small, fixed shapes), parsed with
ElementTree (``DeleteObjects`` and ``CompleteMultipartUpload`` requests). Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from urllib.parse import quote
from xml.sax.saxutils import escape

from nimbus.objects.errors import S3Error
from nimbus.objects.model import Bucket, ObjectInfo, Part, Upload

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def iso_time(ts: float) -> str:
    """``2024-05-01T12:00:00.000Z``, as S3 writes times in XML."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _doc(root: str, parts: Iterable[str]) -> bytes:
    return (f'{_HEAD}<{root} xmlns="{XMLNS}">' + "".join(parts) + f"</{root}>").encode("utf-8")


def etag(value: str) -> str:
    return f'"{value}"'


def error(err: S3Error, request_id: str) -> bytes:
    parts = [_el("Code", err.code), _el("Message", err.message)]
    parts += [_el(k, v) for k, v in err.details.items()]
    if err.resource is not None:
        parts.append(_el("Resource", err.resource))
    parts.append(_el("RequestId", request_id))
    return (_HEAD + "<Error>" + "".join(parts) + "</Error>").encode("utf-8")


def owner(owner_id: str, name: str) -> str:
    return f"<Owner>{_el('ID', owner_id)}{_el('DisplayName', name)}</Owner>"


def list_buckets(buckets: Sequence[Bucket], owner_xml: str) -> bytes:
    items = "".join(
        f"<Bucket>{_el('Name', b.name)}{_el('CreationDate', iso_time(b.created_at))}</Bucket>"
        for b in buckets
    )
    return _doc("ListAllMyBucketsResult", [owner_xml, f"<Buckets>{items}</Buckets>"])


def location() -> bytes:
    return (_HEAD + f'<LocationConstraint xmlns="{XMLNS}"/>').encode()


def list_objects(
    *,
    v2: bool,
    bucket: str,
    prefix: str,
    delimiter: str,
    max_keys: int,
    url_encode: bool,
    objects: Sequence[ObjectInfo],
    prefixes: Sequence[str],
    truncated: bool,
    owner_xml: str | None,
    continuation: str | None = None,
    next_token: str | None = None,
    start_after: str | None = None,
    marker: str | None = None,
    next_marker: str | None = None,
) -> bytes:
    def enc(text: str) -> str:
        return quote(text, safe="/") if url_encode else text

    parts = [_el("Name", bucket), _el("Prefix", enc(prefix))]
    if v2:
        if continuation is not None:
            parts.append(_el("ContinuationToken", continuation))
        if start_after:
            parts.append(_el("StartAfter", enc(start_after)))
        parts.append(_el("KeyCount", len(objects) + len(prefixes)))
    else:
        parts.append(_el("Marker", enc(marker or "")))
        if next_marker is not None:
            parts.append(_el("NextMarker", enc(next_marker)))
    parts.append(_el("MaxKeys", max_keys))
    if delimiter:
        parts.append(_el("Delimiter", enc(delimiter)))
    if url_encode:
        parts.append(_el("EncodingType", "url"))
    parts.append(_el("IsTruncated", "true" if truncated else "false"))
    if v2 and next_token is not None:
        parts.append(_el("NextContinuationToken", next_token))
    for o in objects:
        parts.append(
            "<Contents>"
            + _el("Key", enc(o.key))
            + _el("LastModified", iso_time(o.modified))
            + _el("ETag", etag(o.etag))
            + _el("Size", o.size)
            + (owner_xml or "")
            + _el("StorageClass", "STANDARD")
            + "</Contents>"
        )
    for p in prefixes:
        parts.append(f"<CommonPrefixes>{_el('Prefix', enc(p))}</CommonPrefixes>")
    return _doc("ListBucketResult", parts)


def copy_result(info: ObjectInfo) -> bytes:
    return _doc(
        "CopyObjectResult",
        [_el("LastModified", iso_time(info.modified)), _el("ETag", etag(info.etag))],
    )


def initiate(upload: Upload) -> bytes:
    return _doc(
        "InitiateMultipartUploadResult",
        [_el("Bucket", upload.bucket), _el("Key", upload.key), _el("UploadId", upload.id)],
    )


def complete(location_url: str, info: ObjectInfo) -> bytes:
    return _doc(
        "CompleteMultipartUploadResult",
        [
            _el("Location", location_url),
            _el("Bucket", info.bucket),
            _el("Key", info.key),
            _el("ETag", etag(info.etag)),
        ],
    )


def list_parts(
    upload: Upload,
    parts: Sequence[Part],
    *,
    marker: int,
    max_parts: int,
    truncated: bool,
    owner_xml: str,
) -> bytes:
    items = [
        _el("Bucket", upload.bucket),
        _el("Key", upload.key),
        _el("UploadId", upload.id),
        owner_xml.replace("<Owner>", "<Initiator>").replace("</Owner>", "</Initiator>"),
        owner_xml,
        _el("StorageClass", "STANDARD"),
        _el("PartNumberMarker", marker),
        _el("NextPartNumberMarker", parts[-1].number if parts else marker),
        _el("MaxParts", max_parts),
        _el("IsTruncated", "true" if truncated else "false"),
    ]
    for p in parts:
        items.append(
            "<Part>"
            + _el("PartNumber", p.number)
            + _el("LastModified", iso_time(p.modified))
            + _el("ETag", etag(p.etag))
            + _el("Size", p.size)
            + "</Part>"
        )
    return _doc("ListPartsResult", items)


def delete_result(deleted: Sequence[str], errors: Sequence[tuple[str, S3Error]]) -> bytes:
    parts = [f"<Deleted>{_el('Key', key)}</Deleted>" for key in deleted]
    parts += [
        f"<Error>{_el('Key', key)}{_el('Code', err.code)}{_el('Message', err.message)}</Error>"
        for key, err in errors
    ]
    return _doc("DeleteResult", parts)


# ---- parsing requests ----------------------------------------------------------------------


def _parse(body: bytes) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Error(
            "MalformedXML",
            f"The XML you provided was not well-formed or did not validate: {exc}",
        ) from None
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """``<Delete><Object><Key>..</Key></Object>...<Quiet>true</Quiet></Delete>``."""
    root = _parse(body)
    if root.tag != "Delete":
        raise S3Error("MalformedXML", "the body of DeleteObjects must be a <Delete> element")
    keys = [(o.findtext("Key") or "") for o in root.findall("Object")]
    if not keys or len(keys) > 1000:
        raise S3Error("MalformedXML", "DeleteObjects takes 1 to 1000 keys")
    quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
    return keys, quiet


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """``<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>..</ETag>...``."""
    root = _parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise S3Error(
            "MalformedXML", "the body of CompleteMultipartUpload must be <CompleteMultipartUpload>"
        )
    parts = []
    for p in root.findall("Part"):
        number = (p.findtext("PartNumber") or "").strip()
        tag = (p.findtext("ETag") or "").strip().strip('"')
        if not number.isdigit() or not tag:
            raise S3Error("MalformedXML", "each <Part> needs a <PartNumber> and an <ETag>")
        parts.append((int(number), tag))
    if not parts:
        raise S3Error("MalformedXML", "CompleteMultipartUpload needs at least one <Part>")
    return parts
