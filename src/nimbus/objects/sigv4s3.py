"""S3's flavour of AWS Signature Version 4, on top of :mod:`nimbus.compat.sigv4`.

What differs from the other services (and from the Lambda API's checks):

- the path is not normalised and is URI-encoded once (``/s3/b/a%20b``), as
  botocore signs it for S3;
- the body hash is what ``x-amz-content-sha256`` says: a hex SHA-256 (checked
  while the body streams in; a mismatch is ``XAmzContentSHA256Mismatch``),
  ``UNSIGNED-PAYLOAD``, or one of the ``aws-chunked`` streaming modes (each chunk
  signed, see :mod:`nimbus.objects.chunked`);
- presigned URLs sign ``UNSIGNED-PAYLOAD``; besides V4 ones (``X-Amz-*``),
  botocore's default presigned URLs for S3 use Signature Version 2
  (``AWSAccessKeyId``, ``Expires``, ``Signature``: HMAC-SHA1), accepted for GET
  and HEAD only;
- refusals use S3's codes: ``AccessDenied``, ``InvalidAccessKeyId``,
  ``SignatureDoesNotMatch``, ``RequestTimeTooSkewed``,
  ``AuthorizationHeaderMalformed``.

Pure: the request's parts, the secret and ``now`` in, a :class:`PayloadRule` or
an :class:`S3Error` out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes

from nimbus.compat import sigv4
from nimbus.objects.chunked import ChunkSigner
from nimbus.objects.errors import S3Error

SERVICE = "s3"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
#: Query parameters that are part of a V2 signature's resource (S3's sub-resources).
_V2_SUBRESOURCES = frozenset(
    {
        "acl",
        "cors",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "notification",
        "partNumber",
        "policy",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)


@dataclass(frozen=True)
class PayloadRule:
    """How the body must be checked once the signature is good."""

    #: A hex SHA-256 the body must have, or None (unsigned, or streaming).
    sha256: str | None = None
    #: The body is ``aws-chunked``; ``signer`` is set when its chunks are signed.
    chunked: bool = False
    signer: ChunkSigner | None = None


def is_presigned_v2(params: dict[str, str]) -> bool:
    return "AWSAccessKeyId" in params and "Signature" in params


def s3_error(exc: sigv4.SignatureError) -> S3Error:
    """The S3 answer to a refusal of :mod:`nimbus.compat.sigv4`."""
    if isinstance(exc, sigv4.MissingAuthenticationError):
        return S3Error(
            "AccessDenied",
            "Anonymous requests are not allowed: sign requests with a Nimbus access key "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from `nimbus key create`)",
        )
    if isinstance(exc, sigv4.IncompleteSignatureError):
        return S3Error("AuthorizationHeaderMalformed", exc.message)
    if isinstance(exc, sigv4.UnrecognizedClientError):
        return S3Error(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records (unknown or "
            "revoked Nimbus access key).",
        )
    if isinstance(exc, sigv4.SignatureExpiredError):
        if exc.message.startswith("Signature expired: the presigned URL"):
            return S3Error("AccessDenied", "Request has expired")
        return S3Error("RequestTimeTooSkewed", exc.message)
    if exc.message.startswith("Credential should be scoped"):
        return S3Error(
            "AuthorizationHeaderMalformed",
            f"the credential scope must name the service {SERVICE!r} (sign for s3)",
        )
    return S3Error("SignatureDoesNotMatch", exc.message)


def canonical_uri(raw_path: bytes) -> str:
    """The path as S3 signs it: decoded, then URI-encoded once, not normalised."""
    return quote(unquote_to_bytes(raw_path), safe="/~")


def canonical_request(request: sigv4.HttpRequest, claim: sigv4.Signature, payload_hash: str) -> str:
    drop = frozenset({"X-Amz-Signature"}) if claim.presigned else frozenset()
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path),
            sigv4.canonical_query(request.query, drop=drop),
            sigv4.canonical_headers(request, claim.signed_headers) + "\n",
            ";".join(claim.signed_headers),
            payload_hash,
        )
    )


def verify(request: sigv4.HttpRequest, claim: sigv4.Signature, secret: str) -> PayloadRule:
    """Check a V4 signature (header or presigned) with ``secret``; how to check the body."""
    if claim.presigned:
        params = sigv4.query_params(request.query)
        payload_hash = params.get("X-Amz-Content-Sha256") or sigv4.UNSIGNED_PAYLOAD
    else:
        claimed = request.header("x-amz-content-sha256")
        if claimed is None:
            raise S3Error(
                "InvalidRequest",
                "Missing required header for this request: x-amz-content-sha256",
            )
        payload_hash = claimed
    key = sigv4.signing_key(secret, claim.date, claim.region, claim.service)
    canonical = canonical_request(request, claim, payload_hash)
    to_sign = sigv4.string_to_sign(claim.amz_date, claim.scope, canonical)
    expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, claim.signature):
        raise S3Error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    if payload_hash in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
        return PayloadRule(
            chunked=True, signer=ChunkSigner(key, claim.amz_date, claim.scope, expected)
        )
    if payload_hash == STREAMING_UNSIGNED_TRAILER:
        return PayloadRule(chunked=True)
    if payload_hash == sigv4.UNSIGNED_PAYLOAD:
        return PayloadRule()
    if len(payload_hash) != 64 or any(c not in "0123456789abcdef" for c in payload_hash.lower()):
        raise S3Error(
            "InvalidArgument",
            "x-amz-content-sha256 must be the hex SHA-256 of the body, UNSIGNED-PAYLOAD or "
            "a STREAMING-* mode",
        )
    return PayloadRule(sha256=payload_hash.lower())


def verify_presigned_v2(
    request: sigv4.HttpRequest, secret: str, now: datetime, *, mount: str = ""
) -> None:
    """Check a Signature Version 2 presigned URL (botocore's default for S3)."""
    if request.method not in ("GET", "HEAD"):
        raise S3Error(
            "AccessDenied",
            "Signature Version 2 presigned URLs are accepted for GET and HEAD only; presign "
            "with Config(signature_version='s3v4')",
        )
    params = sigv4.query_params(request.query)
    expires = params.get("Expires", "")
    if not expires.isdigit():
        raise S3Error("AccessDenied", "Query-string authentication requires Expires")
    if now > datetime.fromtimestamp(int(expires), UTC):
        raise S3Error("AccessDenied", "Request has expired")
    subresources = sorted(
        (name, value) for name, value in _pairs(request.query) if name in _V2_SUBRESOURCES
    )
    query = "&".join(f"{k}={v}" if v else k for k, v in subresources)
    path = request.raw_path.decode("latin-1")
    # botocore signs the path below the endpoint's (``/bucket/key``); others the whole path.
    paths = [path, path.removeprefix(mount)] if mount and path.startswith(mount) else [path]
    for resource in paths:
        to_sign = "\n".join(
            (
                request.method,
                request.header("content-md5") or "",
                request.header("content-type") or "",
                expires,
                resource + (f"?{query}" if query else ""),
            )
        )
        expected = base64.b64encode(
            hmac.new(secret.encode(), to_sign.encode("utf-8"), hashlib.sha1).digest()
        ).decode()
        if hmac.compare_digest(expected, params.get("Signature", "")):
            return
    raise S3Error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    )


def _pairs(query: bytes) -> list[tuple[str, str]]:
    out = []
    for part in query.split(b"&") if query else []:
        name, _, value = part.partition(b"=")
        out.append(
            (
                unquote_to_bytes(name).decode("utf-8", "replace"),
                unquote_to_bytes(value).decode("utf-8", "replace"),
            )
        )
    return out
