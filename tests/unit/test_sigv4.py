"""The SigV4 verifier against botocore's own signers: what botocore signs verifies, and
any change to what was signed (body, header, path, query, method, time) does not."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nimbus.compat import sigv4

CREDS = Credentials("NIMBABCDEFGHIJ012345", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
NOW = datetime(2026, 5, 1, 12, 30, 0, tzinfo=UTC)
HOST = "127.0.0.1:8080"


def signed(
    method: str,
    path_and_query: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    region: str = "eu-west-3",
    service: str = "lambda",
    at: datetime = NOW,
    presign_expires_s: int | None = None,
) -> tuple[sigv4.HttpRequest, bytes]:
    """A request signed by botocore at ``at``, as the server receives it."""
    request = AWSRequest(
        method=method, url=f"http://{HOST}{path_and_query}", data=body, headers=headers or {}
    )
    signer: Any = (
        SigV4QueryAuth(CREDS, service, region, expires=presign_expires_s)
        if presign_expires_s is not None
        else SigV4Auth(CREDS, service, region)
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        signer.add_auth(request)
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    received = [(k.lower(), v) for k, v in prepared.headers.items()]
    if not any(k == "host" for k, _ in received):
        received.append(("host", url.netloc))  # what the HTTP client adds
    raw = prepared.body or b""
    payload = raw.encode() if isinstance(raw, str) else raw
    return (
        sigv4.HttpRequest(method, url.path.encode(), url.query.encode(), tuple(received)),
        payload,
    )


def check(request: sigv4.HttpRequest, body: bytes, *, now: datetime = NOW) -> sigv4.Signature:
    claim = sigv4.parse(request)
    sigv4.check_claims(claim, service="lambda", now=now)
    sigv4.verify(request, claim, CREDS.secret_key, body)
    return claim


# ---- what botocore signs verifies ---------------------------------------------------------

CASES = [
    ("GET", "/2015-03-31/functions/", b"", {}),
    ("GET", "/2015-03-31/functions/?MaxItems=2&Marker=WyJhIl0%3D&FunctionVersion=ALL", b"", {}),
    ("GET", "/2015-03-31/functions/hello/configuration?Qualifier=%24LATEST", b"", {}),
    (
        "GET",
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-3%3A123456789012%3Afunction%3Ahi",
        b"",
        {},
    ),
    ("GET", "/2015-03-31/functions/h%C3%A9llo%20w%C3%B6rld/aliases/%E2%9C%93", b"", {}),
    ("GET", "/2015-03-31/functions/a/./b/../c//d/", b"", {}),
    ("GET", "/2015-03-31/functions/x?a=1&a=0&b=%2B%20%2F&empty=", b"", {}),
    ("DELETE", "/2015-03-31/functions/hello", b"", {}),
    (
        "POST",
        "/2015-03-31/functions/hello/invocations",
        '{"name": "ünïcode"}'.encode(),
        {"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "Tail"},
    ),
    (
        "PUT",
        "/2017-10-31/functions/hello/concurrency",
        b'{"ReservedConcurrentExecutions": 3}',
        {"Content-Type": "application/json", "X-Custom": "  spaced   out  value "},
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), CASES)
def test_botocore_signatures_verify(
    method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    request, sent = signed(method, path, body, headers)
    claim = check(request, sent)
    assert (claim.access_key_id, claim.region, claim.service) == (
        CREDS.access_key,
        "eu-west-3",
        "lambda",
    )
    assert "host" in claim.signed_headers


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2", "nimbus-local"])
def test_any_region_is_accepted(region: str) -> None:
    request, body = signed("GET", "/2015-03-31/functions/", region=region)
    assert check(request, body).region == region


def test_a_date_header_instead_of_x_amz_date() -> None:
    request, body = signed("GET", "/2015-03-31/functions/", headers={"Date": "placeholder"})
    assert (request.header("date") or "").startswith("Fri, 01 May 2026 12:30:00")
    assert request.header("x-amz-date") is None
    check(request, body)


def test_presigned_urls_verify_until_they_expire() -> None:
    request, body = signed("GET", "/2015-03-31/functions/x/code?Qualifier=3", presign_expires_s=60)
    claim = check(request, body, now=NOW + timedelta(seconds=59))
    assert claim.presigned and claim.expires_s == 60
    with pytest.raises(sigv4.SignatureExpiredError, match="Signature expired"):
        check(request, body, now=NOW + timedelta(seconds=61))


def test_own_presigned_query_verifies() -> None:
    query = sigv4.presign_query(
        method="GET",
        host=HOST,
        raw_path=b"/2015-03-31/functions/x/code",
        params=[("Qualifier", "$LATEST")],
        access_key_id=CREDS.access_key,
        secret=CREDS.secret_key,
        region="us-east-1",
        service="lambda",
        now=NOW,
        expires_s=600,
    )
    request = sigv4.HttpRequest(
        "GET", b"/2015-03-31/functions/x/code", query.encode(), (("host", HOST),)
    )
    check(request, b"", now=NOW + timedelta(seconds=10))
    moved = dataclasses.replace(request, raw_path=b"/2015-03-31/functions/y/code")
    with pytest.raises(sigv4.InvalidSignatureError):
        check(moved, b"", now=NOW)


# ---- any change breaks it ------------------------------------------------------------------


def _with_header(request: sigv4.HttpRequest, name: str, value: str) -> sigv4.HttpRequest:
    headers = tuple((k, value if k == name else v) for k, v in request.headers)
    return dataclasses.replace(request, headers=headers)


def test_a_tampered_body_fails() -> None:
    request, _body = signed("POST", "/2015-03-31/functions/f/invocations", b'{"amount": 1}')
    with pytest.raises(sigv4.InvalidSignatureError, match="does not match"):
        check(request, b'{"amount": 1000}')


def test_a_tampered_signed_header_fails() -> None:
    request, body = signed(
        "POST", "/2015-03-31/functions/f/invocations", b"{}", {"X-Amz-Invocation-Type": "Event"}
    )
    with pytest.raises(sigv4.InvalidSignatureError):
        check(_with_header(request, "x-amz-invocation-type", "RequestResponse"), body)
    with pytest.raises(sigv4.InvalidSignatureError):
        check(_with_header(request, "host", "evil.example:80"), body)


@pytest.mark.parametrize(
    "change",
    [
        {"method": "DELETE"},
        {"raw_path": b"/2015-03-31/functions/other"},
        {"query": b"Qualifier=2"},
    ],
)
def test_a_tampered_request_line_fails(change: dict[str, Any]) -> None:
    request, body = signed("GET", "/2015-03-31/functions/f?Qualifier=1")
    with pytest.raises(sigv4.InvalidSignatureError):
        check(dataclasses.replace(request, **change), body)


def test_the_wrong_secret_fails() -> None:
    request, body = signed("GET", "/2015-03-31/functions/")
    claim = sigv4.parse(request)
    with pytest.raises(sigv4.InvalidSignatureError):
        sigv4.verify(request, claim, CREDS.secret_key + "x", body)


def test_a_stale_or_future_time_is_refused_whatever_the_signature() -> None:
    request, body = signed("GET", "/2015-03-31/functions/")
    check(request, body, now=NOW + timedelta(minutes=4, seconds=59))
    with pytest.raises(sigv4.SignatureExpiredError, match=r"^Signature expired: 20260501T123000Z"):
        check(request, body, now=NOW + timedelta(minutes=5, seconds=1))
    with pytest.raises(sigv4.SignatureExpiredError, match="Signature not yet current"):
        check(request, body, now=NOW - timedelta(minutes=6))
    assert sigv4.SignatureExpiredError.aws_type == "InvalidSignatureException"


def test_a_changed_time_header_fails() -> None:
    request, body = signed("GET", "/2015-03-31/functions/")
    later = _with_header(request, "x-amz-date", "20260501T123100Z")
    with pytest.raises(sigv4.InvalidSignatureError):
        check(later, body)


def test_the_service_must_be_lambda() -> None:
    request, body = signed("GET", "/2015-03-31/functions/", service="s3")
    with pytest.raises(sigv4.InvalidSignatureError, match="correct service: 'lambda'"):
        check(request, body)


def test_a_payload_hash_header_must_match_the_body() -> None:
    request, body = signed(
        "POST",
        "/2015-03-31/functions/f/invocations",
        b"{}",
        {"X-Amz-Content-SHA256": "0" * 64},
    )
    with pytest.raises(sigv4.InvalidSignatureError, match="x-amz-content-sha256"):
        check(request, body)
    unsigned, body = signed(
        "POST",
        "/2015-03-31/functions/f/invocations",
        b"{}",
        {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    )
    with pytest.raises(sigv4.InvalidSignatureError, match="payload signed"):
        check(unsigned, body)


# ---- malformed claims ----------------------------------------------------------------------


def _request(**headers: str) -> sigv4.HttpRequest:
    return sigv4.HttpRequest(
        "GET", b"/2015-03-31/functions/", b"", (("host", HOST), *headers.items())
    )


def test_no_signature_at_all() -> None:
    with pytest.raises(sigv4.MissingAuthenticationError) as exc:
        sigv4.parse(_request())
    assert exc.value.aws_type == "MissingAuthenticationTokenException"


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        ("Bearer nmb_abc", "Bearer"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=ab", "'Credential'"),
        ("AWS4-HMAC-SHA256 Credential=A/20260501/r/lambda/aws4_request, Signature=ab", "Signed"),
        (
            "AWS4-HMAC-SHA256 Credential=A/20260501/r/lambda/aws4_request, "
            "SignedHeaders=x-amz-date, Signature=ab",
            "'Host'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=A/20260501/lambda/aws4_request, "
            "SignedHeaders=host, Signature=ab",
            "Credential must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=A/20260501/r/lambda/aws5_request, "
            "SignedHeaders=host, Signature=ab",
            "terminator",
        ),
    ],
)
def test_malformed_authorization_headers(authorization: str, expected: str) -> None:
    request = _request(authorization=authorization, **{"x-amz-date": "20260501T123000Z"})
    with pytest.raises(sigv4.IncompleteSignatureError, match=expected) as exc:
        sigv4.parse(request)
    assert exc.value.aws_type == "IncompleteSignatureException"


def test_a_time_is_required_and_must_parse() -> None:
    authorization = (
        "AWS4-HMAC-SHA256 Credential=A/20260501/r/lambda/aws4_request, "
        "SignedHeaders=host, Signature=ab"
    )
    with pytest.raises(sigv4.IncompleteSignatureError, match="X-Amz-Date"):
        sigv4.parse(_request(authorization=authorization))
    with pytest.raises(sigv4.IncompleteSignatureError, match="ISO 8601"):
        sigv4.parse(_request(authorization=authorization, **{"x-amz-date": "yesterday"}))


def test_the_scope_date_must_be_the_request_date() -> None:
    request = _request(
        authorization="AWS4-HMAC-SHA256 Credential=A/20260430/r/lambda/aws4_request, "
        "SignedHeaders=host, Signature=ab",
        **{"x-amz-date": "20260501T123000Z"},
    )
    with pytest.raises(sigv4.InvalidSignatureError, match="Date in Credential scope"):
        sigv4.check_claims(sigv4.parse(request), service="lambda", now=NOW)


def test_canonical_forms() -> None:
    assert sigv4.canonical_uri(b"") == "/"
    assert sigv4.canonical_uri(b"/a/./b/../c//d/") == "/a/c/d/"
    assert sigv4.canonical_uri(b"/f/arn%3Aaws") == "/f/arn%253Aaws"
    assert sigv4.canonical_uri(b"/f/arn:aws") == "/f/arn%253Aaws"  # same, however sent
    assert sigv4.canonical_query(b"b=2&a=%7e&a=1&c") == "a=1&a=~&b=2&c="
    assert sigv4.canonical_query(b"q=a+b") == "q=a%2Bb"
