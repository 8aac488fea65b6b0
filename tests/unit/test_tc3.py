"""The TC3-HMAC-SHA256 verifier against Tencent's own signer (``tencentcloud-sdk-python``):
what the SDK signs verifies, and any change to what was signed (body, signed header,
time, method) does not; a vector computed by hand from the spec with the SDK's
``Sign.sign_tc3`` agrees."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from tencentcloud.common.credential import Credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.sign import Sign
from tencentcloud.scf.v20180416.scf_client import ScfClient

from nimbus.compat import tc3
from nimbus.compat.sigv4 import HttpRequest

SECRET_ID = "NIMBABCDEFGHIJ012345"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOW = datetime(2026, 5, 1, 12, 30, 0, tzinfo=UTC)
HOST = "127.0.0.1:8080"


def sdk_signed(
    action: str = "ListFunctions",
    params: dict[str, Any] | None = None,
    *,
    method: str = "POST",
    at: datetime = NOW,
    secret: str = SECRET,
    endpoint: str = HOST,
    unsigned_payload: bool = False,
) -> tuple[HttpRequest, bytes]:
    """A request the SCF SDK signed at ``at``, as the server receives it."""
    profile = ClientProfile(
        httpProfile=HttpProfile(endpoint=endpoint, protocol="http", reqMethod=method)
    )
    profile.unsignedPayload = unsigned_payload
    client = ScfClient(Credential(SECRET_ID, secret), "ap-guangzhou", profile)
    request = RequestInternal(endpoint, method, "/", header={})
    with mock.patch("tencentcloud.common.abstract_client.time") as clock:
        clock.time.return_value = at.timestamp()
        client._build_req_inter(action, params or {}, request)
    headers = tuple((name.lower(), str(value)) for name, value in request.header.items())
    data = request.data.encode() if isinstance(request.data, str) else request.data
    if method == "GET":
        return HttpRequest(method, b"/", data, headers), b""
    return HttpRequest(method, b"/", b"", headers), data


def check(request: HttpRequest, body: bytes, *, now: datetime = NOW) -> tc3.Claim:
    claim = tc3.parse(request)
    tc3.check_claims(claim, service="scf", now=now)
    tc3.verify(request, claim, SECRET, body)
    return claim


def with_header(request: HttpRequest, name: str, value: str) -> HttpRequest:
    headers = (*((k, v) for k, v in request.headers if k != name), (name, value))
    return dataclasses.replace(request, headers=headers)


# ---- what the SDK signs verifies ---------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("ListFunctions", {}),
        ("ListFunctions", {"Offset": 2, "Limit": 5, "Namespace": "default"}),
        (
            "Invoke",
            {"FunctionName": "hello", "ClientContext": '{"name": "Nïmbus ☁"}', "LogType": "Tail"},
        ),
        (
            "CreateFunction",
            {
                "FunctionName": "hello",
                "Code": {"ZipFile": "UEsDBAo="},
                "Environment": {"Variables": [{"Key": "A", "Value": "b c"}]},
            },
        ),
    ],
)
def test_sdk_signatures_verify(action: str, params: dict[str, Any]) -> None:
    request, body = sdk_signed(action, params)
    claim = check(request, body)
    assert (claim.secret_id, claim.service, claim.date) == (SECRET_ID, "scf", "2026-05-01")
    assert claim.signed_headers == ("content-type", "host")
    assert claim.timestamp == NOW


def test_get_signatures_cover_the_query_string() -> None:
    params = {"Offset": 1, "Limit": 2, "SearchKey": "a b&c"}
    request, body = sdk_signed("ListFunctions", params, method="GET")
    assert body == b"" and b"SearchKey=a+b%26c" in request.query
    check(request, body)
    changed = dataclasses.replace(request, query=request.query.replace(b"Limit=2", b"Limit=3"))
    with pytest.raises(tc3.SignatureFailureError):
        check(changed, body)


def test_an_independent_vector_from_the_spec() -> None:
    """The canonical request and string to sign written out by hand, signed with the
    SDK's own ``Sign.sign_tc3``."""
    body = b'{"Limit": 1}'
    timestamp = int(NOW.timestamp())
    canonical = (
        "POST\n/\n\n"
        "content-type:application/json\nhost:127.0.0.1:8080\n\n"
        "content-type;host\n" + hashlib.sha256(body).hexdigest()
    )
    to_sign = (
        f"TC3-HMAC-SHA256\n{timestamp}\n2026-05-01/scf/tc3_request\n"
        + hashlib.sha256(canonical.encode()).hexdigest()
    )
    signature = Sign.sign_tc3(SECRET, "2026-05-01", "scf", to_sign)
    request = HttpRequest(
        "POST",
        b"/",
        b"",
        (
            ("content-type", "application/json"),
            ("host", HOST),
            ("x-tc-timestamp", str(timestamp)),
            ("x-tc-action", "ListFunctions"),
            (
                "authorization",
                f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2026-05-01/scf/tc3_request, "
                f"SignedHeaders=content-type;host, Signature={signature}",
            ),
        ),
    )
    claim = check(request, body)
    assert tc3.canonical_request(
        request, claim.signed_headers, hashlib.sha256(body).hexdigest()
    ) == (canonical)
    assert tc3.string_to_sign(claim.timestamp_text, claim.scope, canonical) == to_sign
    # The same request signed by the SDK carries the same signature.
    sdk_request, sdk_body = sdk_signed("ListFunctions", {"Limit": 1})
    assert sdk_body == body
    assert (sdk_request.header("authorization") or "").endswith(f"Signature={signature}")


def test_header_values_signed_lower_cased_or_as_sent_both_verify() -> None:
    """The spec lower-cases signed header values; the SDKs sign them as sent."""
    request, body = sdk_signed(endpoint="LocalHost:8080")  # the SDK signs the value as is
    check(request, body)
    claim = tc3.parse(request)
    spec_signature = tc3.compute_signature(
        request, claim, SECRET, payload_hash=hashlib.sha256(body).hexdigest()
    )
    authorization = request.header("authorization") or ""
    spec_form = with_header(
        request,
        "authorization",
        authorization.replace(claim.signature, spec_signature),
    )
    assert spec_signature != claim.signature
    check(spec_form, body)


# ---- any change to what was signed fails -------------------------------------------------------


def test_a_tampered_body_fails() -> None:
    request, body = sdk_signed("Invoke", {"FunctionName": "a"})
    with pytest.raises(tc3.SignatureFailureError):
        check(request, body.replace(b'"a"', b'"b"'))


@pytest.mark.parametrize(
    ("name", "value"),
    [("content-type", "text/plain"), ("host", "127.0.0.1:9090")],
)
def test_a_tampered_signed_header_fails(name: str, value: str) -> None:
    request, body = sdk_signed()
    with pytest.raises(tc3.SignatureFailureError):
        check(with_header(request, name, value), body)


def test_unsigned_headers_may_change() -> None:
    """The SDK signs content-type and host only (the action header is not covered)."""
    request, body = sdk_signed()
    check(with_header(request, "x-tc-region", "ap-beijing"), body)


def test_a_changed_timestamp_or_method_fails() -> None:
    request, body = sdk_signed()
    later = str(int(NOW.timestamp()) + 1)
    with pytest.raises(tc3.SignatureFailureError):
        check(with_header(request, "x-tc-timestamp", later), body)
    with pytest.raises(tc3.SignatureFailureError):
        check(dataclasses.replace(request, method="GET"), body)


def test_the_wrong_secret_fails() -> None:
    request, body = sdk_signed(secret="another secret")
    with pytest.raises(tc3.SignatureFailureError, match="does not match"):
        check(request, body)


def test_unsigned_payloads_are_refused() -> None:
    request, body = sdk_signed(unsigned_payload=True)
    assert request.header("x-tc-content-sha256") == "UNSIGNED-PAYLOAD"
    with pytest.raises(tc3.SignatureFailureError, match="UNSIGNED-PAYLOAD"):
        check(request, body)


# ---- the claim ------------------------------------------------------------------------------


@pytest.mark.parametrize("skew_s", [-301, 301, -3600])
def test_a_stale_or_future_time_is_refused_whatever_the_signature(skew_s: int) -> None:
    request, body = sdk_signed(at=NOW + timedelta(seconds=skew_s))
    with pytest.raises(tc3.SignatureExpireError) as exc:
        check(request, body)
    assert exc.value.code == "AuthFailure.SignatureExpire"


@pytest.mark.parametrize("skew_s", [-299, 299])
def test_a_time_within_five_minutes_is_fine(skew_s: int) -> None:
    request, body = sdk_signed(at=NOW + timedelta(seconds=skew_s))
    check(request, body)


def test_the_scope_must_be_scf_on_the_timestamps_date() -> None:
    request, _ = sdk_signed()
    claim = tc3.parse(request)
    with pytest.raises(tc3.SignatureFailureError, match="service 'cvm'"):
        tc3.check_claims(dataclasses.replace(claim, service="cvm"), service="scf", now=NOW)
    with pytest.raises(tc3.SignatureFailureError, match="date"):
        tc3.check_claims(dataclasses.replace(claim, date="2026-04-30"), service="scf", now=NOW)


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, tc3.SignatureFailureError),
        ("", tc3.SignatureFailureError),
        ("Bearer nmb_secret", tc3.InvalidAuthorizationError),
        ("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request", tc3.InvalidAuthorizationError),
        ("TC3-HMAC-SHA256 Credential=ID/2026-05-01/scf/tc3_request", tc3.InvalidAuthorizationError),
        (
            "TC3-HMAC-SHA256 Credential=ID/2026-05-01/scf, SignedHeaders=content-type;host, "
            "Signature=ab",
            tc3.InvalidAuthorizationError,
        ),
        (
            "TC3-HMAC-SHA256 Credential=ID/2026-05-01/scf/tc3_request, SignedHeaders=host, "
            "Signature=ab",
            tc3.InvalidAuthorizationError,
        ),
        (
            "TC3-HMAC-SHA256 Credential=ID/2026-05-01/scf/tc3_request, "
            "SignedHeaders=Content-Type;Host, Signature=ab",
            tc3.InvalidAuthorizationError,
        ),
    ],
)
def test_malformed_authorization_headers(
    authorization: str | None, error: type[tc3.SignatureError]
) -> None:
    request, _ = sdk_signed()
    headers = tuple((k, v) for k, v in request.headers if k != "authorization")
    if authorization is not None:
        headers += (("authorization", authorization),)
    with pytest.raises(error):
        tc3.parse(dataclasses.replace(request, headers=headers))


def test_the_timestamp_is_required_and_must_be_seconds() -> None:
    request, _ = sdk_signed()
    without = dataclasses.replace(
        request, headers=tuple((k, v) for k, v in request.headers if k != "x-tc-timestamp")
    )
    with pytest.raises(tc3.MissingTimestampError):
        tc3.parse(without)
    for bad in ("2026-05-01T12:30:00Z", "-5", "1.5"):
        with pytest.raises(tc3.InvalidTimestampError):
            tc3.parse(with_header(request, "x-tc-timestamp", bad))


def test_errors_carry_api_3_codes() -> None:
    assert {
        cls.code
        for cls in (
            tc3.InvalidAuthorizationError,
            tc3.MissingTimestampError,
            tc3.InvalidTimestampError,
            tc3.SecretIdNotFoundError,
            tc3.SignatureFailureError,
            tc3.SignatureExpireError,
        )
    } == {
        "AuthFailure.InvalidAuthorization",
        "MissingParameter",
        "InvalidParameterValue",
        "AuthFailure.SecretIdNotFound",
        "AuthFailure.SignatureFailure",
        "AuthFailure.SignatureExpire",
    }
