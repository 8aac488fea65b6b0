"""Bucket and object key names, checked as S3 checks them. Pure."""

from __future__ import annotations

import re

from nimbus.objects.errors import S3Error

#: 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter
#: or digit (S3's rules for general purpose buckets).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3")
MAX_KEY_BYTES = 1024


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid bucket name, or None when it is."""
    if not _BUCKET_RE.match(name):
        return (
            "bucket names are 3-63 characters: lower-case letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "bucket names may not have two adjacent periods or a period next to a hyphen"
    if _IP_RE.match(name):
        return "bucket names may not look like an IP address"
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return (
            f"bucket names may not start with {', '.join(_RESERVED_PREFIXES)} "
            f"or end with {', '.join(_RESERVED_SUFFIXES)}"
        )
    return None


def check_bucket_name(name: str) -> str:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise S3Error("InvalidBucketName", f"The specified bucket is not valid: {problem}.")
    return name


def check_key(key: str) -> str:
    if not key:
        raise S3Error("InvalidArgument", "an object key may not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error(
            "KeyTooLongError", f"Your key is too long: at most {MAX_KEY_BYTES} bytes of UTF-8."
        )
    return key
