"""Conditional and ranged reads, as S3 answers them. Pure.

- ``Range: bytes=a-b | a- | -n``: one range (``206``), the whole object for
  several ranges or anything else (as S3), ``416 InvalidRange`` past the end;
- ``If-Match``, ``If-Unmodified-Since`` (``412``), ``If-None-Match``,
  ``If-Modified-Since`` (``304``), in RFC 9110's order; HTTP dates have whole
  seconds, so an object's time is compared truncated.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC

from nimbus.objects import xml
from nimbus.objects.errors import S3Error
from nimbus.objects.model import ObjectInfo


def http_date(ts: float) -> str:
    """``Wed, 12 Oct 2009 17:50:00 GMT``."""
    return email.utils.formatdate(ts, usegmt=True)


def etag_in(header: str, etag: str) -> bool:
    """Whether an ``If-Match``-style list (``"a", W/"b"`` or ``*``) names ``etag``."""
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == etag:
            return True
    return False


def http_time(text: str | None) -> float | None:
    """An HTTP date as seconds since the epoch; None when absent or not a date."""
    if not text:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def check_conditions(headers: Mapping[str, str], info: ObjectInfo) -> None:
    """Raise what a GET or HEAD with these (lower-case) request headers answers instead of
    the object: RFC 9110's order, as S3 applies it: If-Match, If-Unmodified-Since (412
    ``PreconditionFailed``), then If-None-Match, If-Modified-Since (304)."""
    modified = int(info.modified)  # HTTP dates have whole seconds
    if_match = headers.get("if-match")
    if if_match is not None:
        if not etag_in(if_match, info.etag):
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-Match",
            )
    else:
        since = http_time(headers.get("if-unmodified-since"))
        if since is not None and modified > since:
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-Unmodified-Since",
            )
    not_modified = S3Error(
        "NotModified",
        "Not Modified",
        headers={
            "etag": xml.etag(info.etag),
            "last-modified": http_date(info.modified),
        },
    )
    if_none = headers.get("if-none-match")
    if if_none is not None:
        if etag_in(if_none, info.etag):
            raise not_modified
    else:
        since = http_time(headers.get("if-modified-since"))
        if since is not None and modified <= since:
            raise not_modified


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=`` range; None to serve the whole object
    (not a byte range, several ranges, or not parseable), as S3 does."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    unsatisfiable = S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"content-range": f"bytes */{size}"},
        RangeRequested=header,
        ActualObjectSize=str(size),
    )
    if not first:
        count = int(last)
        if count == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise unsatisfiable
    return start, end
