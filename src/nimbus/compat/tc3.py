"""Tencent Cloud API 3.0 signatures (``TC3-HMAC-SHA256``), checked as Tencent's spec says.

A signed request carries an ``Authorization`` header::

    TC3-HMAC-SHA256 Credential=SECRET_ID/YYYY-MM-DD/SERVICE/tc3_request,
        SignedHeaders=content-type;host, Signature=HEX

and its time in ``X-TC-Timestamp`` (Unix seconds). The signature is an
HMAC-SHA256 of a *string to sign* (the algorithm, the timestamp, the credential
scope and the SHA-256 of the *canonical request*) under a key derived from the
secret: ``HMAC(HMAC(HMAC("TC3" + SecretKey, date), service), "tc3_request")``.
The canonical request is the method, the URI (always ``/`` in API 3.0), the
query string (``GET`` only; empty for ``POST``), the signed headers
(``name:value`` lines, names lower-case, values trimmed and lower-cased), their
names, and the SHA-256 of the body. The scope's date is the UTC date of the
timestamp, and the timestamp may be at most 5 minutes from the server's clock.

Tencent's own SDKs write header values as sent rather than lower-cased (they
are lower-case anyway, except a ``Host`` given in capitals): a signature over
either form is accepted.

Everything here is pure: the request's parts and ``now`` come in, a
:class:`Claim` or a :class:`SignatureError` comes out. Checking is in two steps,
so the caller can refuse cheaply before reading a body:

1. :func:`parse` reads what the client claims (no secret needed) and
   :func:`check_claims` refuses a stale time or a wrong scope;
2. the caller looks the secret up by ``secret_id``, reads the body, and
   :func:`verify` recomputes the signature.

Each error carries the API 3.0 error code Tencent answers with (``code``), so a
client SDK raises ``TencentCloudSDKException`` with the code it would get from
Tencent Cloud.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from nimbus.compat.sigv4 import HttpRequest

ALGORITHM = "TC3-HMAC-SHA256"
TERMINATOR = "tc3_request"
#: How far ``X-TC-Timestamp`` may be from the server's clock (Tencent: 5 minutes).
MAX_SKEW_S = 300
#: Headers every signature must cover (Tencent's spec: at least these two).
REQUIRED_SIGNED_HEADERS = ("content-type", "host")
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: The canonical URI: API 3.0 serves every action at ``/``.
CANONICAL_URI = "/"


class SignatureError(Exception):
    """A request whose signature cannot be accepted; ``code`` is the API 3.0 error code."""

    code = "AuthFailure.SignatureFailure"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidAuthorizationError(SignatureError):
    """A malformed ``Authorization`` header: another algorithm, a part missing, a
    credential scope not of the form ``ID/DATE/SERVICE/tc3_request``."""

    code = "AuthFailure.InvalidAuthorization"


class MissingTimestampError(SignatureError):
    """No ``X-TC-Timestamp`` header."""

    code = "MissingParameter"


class InvalidTimestampError(SignatureError):
    """An ``X-TC-Timestamp`` that is not a number of seconds."""

    code = "InvalidParameterValue"


class SecretIdNotFoundError(SignatureError):
    """A SecretId that no live key has (unknown or revoked)."""

    code = "AuthFailure.SecretIdNotFound"


class SignatureFailureError(SignatureError):
    """The signature does not match, or the scope is wrong."""

    code = "AuthFailure.SignatureFailure"


class SignatureExpireError(SignatureError):
    """``X-TC-Timestamp`` is more than 5 minutes from the server's clock."""

    code = "AuthFailure.SignatureExpire"


@dataclass(frozen=True)
class Claim:
    """What the client claims: who signed, for which scope, at what time, and how."""

    secret_id: str
    date: str  # YYYY-MM-DD, from the credential scope
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    #: ``X-TC-Timestamp`` as the client wrote it (it is signed as written), and parsed.
    timestamp_text: str
    timestamp: datetime

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.service}/{TERMINATOR}"


# ---- reading the claim ------------------------------------------------------------------


def parse(request: HttpRequest) -> Claim:
    """The signature a request claims, from its ``Authorization`` and ``X-TC-Timestamp``."""
    authorization = request.header("authorization")
    if authorization is None or not authorization.strip():
        raise SignatureFailureError(
            "the request is not signed: sign it with TC3-HMAC-SHA256 using a Nimbus access "
            "key as SecretId and SecretKey (from `nimbus key create`)"
        )
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        hint = (
            "; Nimbus API keys (Bearer) work on /v1 only, the SCF API needs the key's "
            "access key id and secret as SecretId and SecretKey"
            if algorithm.lower() == "bearer"
            else ""
        )
        raise InvalidAuthorizationError(
            f"Authorization must use the {ALGORITHM} algorithm, not {algorithm!r}{hint}"
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip()] = value.strip()
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not parts.get(p)]
    if missing:
        raise InvalidAuthorizationError(
            f"Authorization lacks {', '.join(missing)}: write it as {ALGORITHM} "
            "Credential=SECRET_ID/DATE/SERVICE/tc3_request, SignedHeaders=content-type;host, "
            "Signature=HEX"
        )
    fields = parts["Credential"].split("/")
    if len(fields) != 4 or not all(fields) or fields[3] != TERMINATOR:
        raise InvalidAuthorizationError(
            f"Credential must be SECRET_ID/YYYY-MM-DD/SERVICE/{TERMINATOR}, "
            f"got {parts['Credential']!r}"
        )
    secret_id, date, service, _terminator = fields
    names = tuple(parts["SignedHeaders"].split(";"))
    if not all(names) or any(n != n.lower() for n in names):
        raise InvalidAuthorizationError(
            "SignedHeaders must be lower-case header names joined by ';', "
            f"got {parts['SignedHeaders']!r}"
        )
    unsigned = [h for h in REQUIRED_SIGNED_HEADERS if h not in names]
    if unsigned:
        raise InvalidAuthorizationError(
            f"SignedHeaders must include {' and '.join(REQUIRED_SIGNED_HEADERS)}; "
            f"{', '.join(unsigned)} missing"
        )
    timestamp_text = request.header("x-tc-timestamp")
    if timestamp_text is None:
        raise MissingTimestampError(
            "the request lacks X-TC-Timestamp: the Unix time, in seconds, it was signed at"
        )
    stripped = timestamp_text.strip()
    if not stripped.isdigit() or len(stripped) > 12:
        raise InvalidTimestampError(
            f"X-TC-Timestamp must be a Unix time in seconds, got {timestamp_text!r}"
        )
    return Claim(
        secret_id=secret_id,
        date=date,
        service=service,
        signed_headers=names,
        signature=parts["Signature"].lower(),
        timestamp_text=timestamp_text,
        timestamp=datetime.fromtimestamp(int(stripped), UTC),
    )


# ---- checking the claim -------------------------------------------------------------------


def check_claims(claim: Claim, *, service: str, now: datetime) -> None:
    """Refuse a claim no secret can make valid: a time more than 5 minutes from ``now``, a
    scope for another service, a scope date that is not the timestamp's UTC date."""
    skew_s = (claim.timestamp - now).total_seconds()
    if abs(skew_s) > MAX_SKEW_S:
        when = "behind" if skew_s < 0 else "ahead of"
        raise SignatureExpireError(
            f"the signature expired: X-TC-Timestamp {claim.timestamp_text.strip()} "
            f"({_fmt(claim.timestamp)}) is {abs(int(skew_s))} s {when} the server's clock "
            f"({_fmt(now)}); it may differ by at most {MAX_SKEW_S} s: check the client's clock"
        )
    if claim.service != service:
        raise SignatureFailureError(
            f"the credential scope is for service {claim.service!r}; this endpoint serves "
            f"{service!r}"
        )
    expected_date = claim.timestamp.strftime("%Y-%m-%d")
    if claim.date != expected_date:
        raise SignatureFailureError(
            f"the credential scope's date {claim.date!r} is not the UTC date of "
            f"X-TC-Timestamp ({expected_date})"
        )


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verify(request: HttpRequest, claim: Claim, secret: str, body: bytes) -> None:
    """Recompute the signature with ``secret``; raise :class:`SignatureFailureError` unless
    it is the one the client sent (over lower-cased header values, as the spec says, or
    over the values as sent, as Tencent's SDKs sign them)."""
    payload_hash = _payload_hash(request, body)
    for lowercase_values in (True, False):
        expected = compute_signature(
            request,
            claim,
            secret,
            payload_hash=payload_hash,
            lowercase_values=lowercase_values,
        )
        if hmac.compare_digest(expected, claim.signature):
            return
    raise SignatureFailureError(
        "the request signature does not match the one computed: check the SecretKey and "
        "that nothing signed (body, content-type, host, timestamp) changed after signing"
    )


def _payload_hash(request: HttpRequest, body: bytes) -> str:
    actual = hashlib.sha256(body).hexdigest()
    claimed = request.header("x-tc-content-sha256")
    if claimed is None:
        return actual
    if claimed.strip() == UNSIGNED_PAYLOAD:
        raise SignatureFailureError(
            "Nimbus needs the payload signed: X-TC-Content-SHA256 may not be UNSIGNED-PAYLOAD "
            "(leave ClientProfile.unsignedPayload off)"
        )
    if claimed.strip().lower() != actual:
        raise SignatureFailureError("X-TC-Content-SHA256 is not the SHA-256 of the request body")
    return actual


# ---- the computation ------------------------------------------------------------------------


def compute_signature(
    request: HttpRequest,
    claim: Claim,
    secret: str,
    *,
    payload_hash: str,
    lowercase_values: bool = True,
) -> str:
    canonical = canonical_request(
        request, claim.signed_headers, payload_hash, lowercase_values=lowercase_values
    )
    to_sign = string_to_sign(claim.timestamp_text, claim.scope, canonical)
    key = signing_key(secret, claim.date, claim.service)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def canonical_request(
    request: HttpRequest,
    signed_headers: tuple[str, ...],
    payload_hash: str,
    *,
    lowercase_values: bool = True,
) -> str:
    return "\n".join(
        (
            request.method.upper(),
            CANONICAL_URI,
            canonical_query(request),
            canonical_headers(request, signed_headers, lowercase_values=lowercase_values) + "\n",
            ";".join(signed_headers),
            payload_hash,
        )
    )


def canonical_query(request: HttpRequest) -> str:
    """The query string as sent for ``GET`` (already URL-encoded); empty for ``POST``."""
    if request.method.upper() != "GET":
        return ""
    return request.query.decode("utf-8", "replace")


def canonical_headers(
    request: HttpRequest, names: tuple[str, ...], *, lowercase_values: bool = True
) -> str:
    """``name:value`` lines of the signed headers, in the order ``SignedHeaders`` gives
    them; repeated headers joined with ``,``, each value trimmed."""
    lines = []
    for name in names:
        value = ",".join(v.strip() for v in request.header_values(name))
        lines.append(f"{name}:{value.lower() if lowercase_values else value}")
    return "\n".join(lines)


def string_to_sign(timestamp_text: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp_text}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, service: str) -> bytes:
    key = ("TC3" + secret).encode("utf-8")
    for part in (date, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key
