"""The pure pieces of the S3 API's HTTP handling: paths, ranges, and which connections of
a Runtime API socket are storage requests."""

from __future__ import annotations

import pytest

from nimbus.objects.conditions import etag_in, parse_range
from nimbus.objects.errors import S3Error
from nimbus.objects.s3_api import parse_path
from nimbus.runtime_api.storage import is_storage_request


def test_paths_give_bucket_and_percent_decoded_key() -> None:
    assert parse_path(b"/s3") == (None, None)
    assert parse_path(b"/s3/") == (None, None)
    assert parse_path(b"/s3/photos") == ("photos", None)
    assert parse_path(b"/s3/photos/") == ("photos", None)
    assert parse_path(b"/s3/photos/a%20b/c%2Bd%2F.jpg") == ("photos", "a b/c+d/.jpg")
    assert parse_path(b"/s3/photos//x") == ("photos", "/x")
    with pytest.raises(S3Error):
        parse_path(b"/s3/photos/%FF")


def test_ranges_as_s3_reads_them() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=95-", 100) == (95, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=0-1,5-6", 100) is None  # several: the whole object
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=a-b", 100) is None
    for unsatisfiable in ("bytes=100-", "bytes=-0", "bytes=5-2"):
        with pytest.raises(S3Error) as err:
            parse_range(unsatisfiable, 100)
        assert err.value.code == "InvalidRange" and err.value.status == 416
        assert err.value.headers == {"content-range": "bytes */100"}


def test_etag_lists() -> None:
    assert etag_in('"abc"', "abc")
    assert etag_in('"x", W/"abc"', "abc")
    assert etag_in("*", "abc")
    assert not etag_in('"abd"', "abc")


def test_storage_requests_are_told_by_their_request_line() -> None:
    for line in (
        b"GET /s3 HTTP/1.1\r\n",
        b"GET /s3?x HTTP/1.1\r\n",
        b"PUT /s3/bucket/key HTTP/1.1\r\nHost: x\r\n",
        b"HEAD /s3/b HTTP/1.1\r\n",
        b"DELETE /s3/b/k HTTP/1.1\r\n",
        b"POST /s3/b?delete HTTP/1.1\r\n",
    ):
        assert is_storage_request(line), line
    for line in (
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n",
        b"POST /runtime/invocation/response HTTP/1.1\r\n",
        b"GET /s3x HTTP/1.1\r\n",
        b'{"not": "a request"}',
        b"",
    ):
        assert not is_storage_request(line), line
