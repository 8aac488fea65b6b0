"""AWS Signature Version 4, checked the way AWS checks it.

A signed request carries, in its ``Authorization`` header (or, for a presigned
URL, in its query string), an access key id, a credential scope
(``date/region/service/aws4_request``), the names of the headers it signed and
a signature: an HMAC-SHA256 of a *string to sign* (the algorithm, the request
time, the scope and the SHA-256 of the *canonical request*) under a key derived
from the secret, the date, the region and the service. The canonical request is
the method, the path (each segment URI-encoded twice, dot segments removed), the
sorted, URI-encoded query, the signed headers (lower-case names, trimmed values)
and the SHA-256 of the body.

Everything here is pure: the request's parts and ``now`` come in, a
:class:`Signature` or a :class:`SignatureError` comes out. Checking is in two
steps so the caller can refuse cheaply before reading a body:

1. :func:`parse` reads what the client claims (no secret needed) and
   :func:`check_claims` refuses a stale time or a wrong scope;
2. the caller looks the secret up by ``access_key_id``, reads the body, and
   :func:`verify` recomputes the signature.

The errors carry the error type AWS answers with (``aws_type``), so a client
library raises the exception it would raise against AWS. Any region is
accepted; the service must be the one the caller names.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
#: How far a request's time may be from the server's clock (AWS: 5 minutes).
MAX_SKEW_S = 300
#: The longest a presigned URL may be valid (AWS: 7 days).
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_QUERY_SAFE = "-_.~"


class SignatureError(Exception):
    """A request whose signature cannot be accepted; ``aws_type`` is AWS's error type.
    Answered with 403."""

    aws_type = "InvalidSignatureException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingAuthenticationError(SignatureError):
    """Neither an ``Authorization`` header nor a presigned query string."""

    aws_type = "MissingAuthenticationTokenException"


class IncompleteSignatureError(SignatureError):
    """A malformed ``Authorization`` header or presigned query (a part missing)."""

    aws_type = "IncompleteSignatureException"


class UnrecognizedClientError(SignatureError):
    """An access key id that no live key has."""

    aws_type = "UnrecognizedClientException"


class InvalidSignatureError(SignatureError):
    """The signature does not match, or the scope is wrong."""

    aws_type = "InvalidSignatureException"


class SignatureExpiredError(InvalidSignatureError):
    """The request's time is more than 5 minutes from the server's (or a presigned URL
    has expired). AWS answers these as ``InvalidSignatureException`` too."""


@dataclass(frozen=True)
class HttpRequest:
    """The parts of a request a signature covers, as received (path and query still
    percent-encoded; header names lower-case, in the order received)."""

    method: str
    raw_path: bytes
    query: bytes
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True)
class Signature:
    """What the client claims: who signed, for which scope, at what time, and how."""

    access_key_id: str
    date: str  # YYYYMMDD, from the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    #: The request time as the client wrote it (``X-Amz-Date``'s form), and parsed.
    amz_date: str
    timestamp: datetime
    #: Set for presigned URLs: how long the URL is valid from ``timestamp``.
    expires_s: int | None = None

    @property
    def presigned(self) -> bool:
        return self.expires_s is not None

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


# ---- reading the claim ------------------------------------------------------------------


def parse(request: HttpRequest) -> Signature:
    """The signature a request claims, from its ``Authorization`` header or its query."""
    authorization = request.header("authorization")
    if authorization is None:
        params = query_params(request.query)
        if "X-Amz-Algorithm" in params or "X-Amz-Signature" in params:
            return _parse_presigned(params)
        raise MissingAuthenticationError(
            "Missing Authentication Token: sign requests with AWS Signature Version 4 "
            "using a Nimbus access key (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from "
            "`nimbus key create`)"
        )
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        hint = (
            "; Nimbus API keys (Bearer) work on /v1 only, the Lambda API needs the key's "
            "access key id and secret access key"
            if algorithm.lower() == "bearer"
            else ""
        )
        raise IncompleteSignatureError(
            f"Unsupported AWS 'algorithm': {algorithm!r}; sign with {ALGORITHM}{hint}"
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip()] = value.strip()
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not parts.get(p)]
    if missing:
        raise IncompleteSignatureError(
            " ".join(f"Authorization header requires '{p}' parameter." for p in missing)
            + f" Authorization={authorization}"
        )
    amz_date = request.header("x-amz-date")
    if amz_date is not None:
        timestamp = _parse_amz_date(amz_date, "X-Amz-Date")
    else:
        date_header = request.header("date")
        if date_header is None:
            raise IncompleteSignatureError(
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header."
            )
        timestamp = _parse_http_date(date_header)
        amz_date = timestamp.strftime(TIME_FORMAT)
    return _signature(
        parts["Credential"], parts["SignedHeaders"], parts["Signature"], amz_date, timestamp
    )


def _parse_presigned(params: dict[str, str]) -> Signature:
    missing = [
        p
        for p in (
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        )
        if not params.get(p)
    ]
    if missing:
        raise IncompleteSignatureError(
            f"a presigned URL needs the query parameters {', '.join(missing)}"
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignatureError(
            f"Unsupported AWS 'algorithm': {params['X-Amz-Algorithm']!r}; sign with {ALGORITHM}"
        )
    expires = params["X-Amz-Expires"]
    if not expires.isdigit() or not 1 <= int(expires) <= MAX_PRESIGN_EXPIRES_S:
        raise IncompleteSignatureError(
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_EXPIRES_S}"
        )
    amz_date = params["X-Amz-Date"]
    signature = _signature(
        params["X-Amz-Credential"],
        params["X-Amz-SignedHeaders"],
        params["X-Amz-Signature"],
        amz_date,
        _parse_amz_date(amz_date, "X-Amz-Date"),
    )
    return Signature(**{**signature.__dict__, "expires_s": int(expires)})


def _signature(
    credential: str, signed_headers: str, signature: str, amz_date: str, timestamp: datetime
) -> Signature:
    fields = credential.split("/")
    if len(fields) != 5 or not all(fields):
        raise IncompleteSignatureError(
            f"Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/{TERMINATOR}, "
            f"got {credential!r}"
        )
    access_key_id, date, region, service, terminator = fields
    if terminator != TERMINATOR:
        raise IncompleteSignatureError(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{terminator}'."
        )
    names = tuple(signed_headers.split(";"))
    if not all(names) or any(n != n.lower() for n in names):
        raise IncompleteSignatureError(
            f"SignedHeaders must be lower-case header names joined by ';', got {signed_headers!r}"
        )
    if "host" not in names:
        raise IncompleteSignatureError("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return Signature(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=names,
        signature=signature.lower(),
        amz_date=amz_date,
        timestamp=timestamp,
    )


def _parse_amz_date(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise IncompleteSignatureError(
            f"{where} must be in ISO 8601 basic format, e.g. 20240101T120000Z; got {text!r}"
        ) from None


def _parse_http_date(text: str) -> datetime:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise IncompleteSignatureError(f"the Date header is not an HTTP date: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def query_params(query: bytes) -> dict[str, str]:
    """A raw query string's parameters, decoded (the first of repeated ones)."""
    params: dict[str, str] = {}
    if query:
        for part in query.split(b"&"):
            key, _, value = part.partition(b"=")
            params.setdefault(_decode(unquote_to_bytes(key)), _decode(unquote_to_bytes(value)))
    return params


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# ---- checking the claim -------------------------------------------------------------------


def check_claims(signature: Signature, *, service: str, now: datetime) -> None:
    """Refuse a claim that no secret can make valid: a wrong service, a scope date that
    is not the request's, a time too far from ``now`` (or an expired presigned URL)."""
    if signature.service != service:
        raise InvalidSignatureError(
            f"Credential should be scoped to correct service: '{service}'. "
        )
    if signature.date != signature.amz_date[:8]:
        raise InvalidSignatureError(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{signature.date}' != '{signature.amz_date[:8]}', from "
            f"'{signature.amz_date}'."
        )
    skew = timedelta(seconds=MAX_SKEW_S)
    stamp = signature.timestamp
    if signature.expires_s is not None:
        expiry = stamp + timedelta(seconds=signature.expires_s)
        if now > expiry:
            raise SignatureExpiredError(
                f"Signature expired: the presigned URL was valid until {_fmt(expiry)}; "
                f"it is now {_fmt(now)}"
            )
    elif stamp < now - skew:
        raise SignatureExpiredError(
            f"Signature expired: {_fmt(stamp)} is now earlier than {_fmt(now - skew)} "
            f"({_fmt(now)} - 5 min.)"
        )
    if stamp > now + skew:
        raise SignatureExpiredError(
            f"Signature not yet current: {_fmt(stamp)} is still later than {_fmt(now + skew)} "
            f"({_fmt(now)} + 5 min.)"
        )


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def verify(request: HttpRequest, signature: Signature, secret: str, body: bytes) -> None:
    """Recompute the signature with ``secret``; raise :class:`InvalidSignatureError` unless
    it is the one the client sent."""
    expected = compute_signature(
        request, signature, secret, payload_hash=_payload_hash(request, signature, body)
    )
    if not hmac.compare_digest(expected, signature.signature):
        raise InvalidSignatureError(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details."
        )


def _payload_hash(request: HttpRequest, signature: Signature, body: bytes) -> str:
    actual = hashlib.sha256(body).hexdigest()
    claimed = request.header("x-amz-content-sha256")
    if claimed is None:
        return actual
    if claimed == UNSIGNED_PAYLOAD:
        raise InvalidSignatureError(
            "Nimbus needs the payload signed: x-amz-content-sha256 may not be UNSIGNED-PAYLOAD"
        )
    if claimed.lower() != actual:
        raise InvalidSignatureError(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return claimed


# ---- the computation ------------------------------------------------------------------------


def compute_signature(
    request: HttpRequest, signature: Signature, secret: str, *, payload_hash: str
) -> str:
    canonical = canonical_request(request, signature, payload_hash)
    to_sign = string_to_sign(signature.amz_date, signature.scope, canonical)
    key = signing_key(secret, signature.date, signature.region, signature.service)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def canonical_request(request: HttpRequest, signature: Signature, payload_hash: str) -> str:
    drop = frozenset({"X-Amz-Signature"}) if signature.presigned else frozenset()
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.query, drop=drop),
            canonical_headers(request, signature.signed_headers) + "\n",
            ";".join(signature.signed_headers),
            payload_hash,
        )
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def path_segments(raw_path: bytes) -> list[bytes]:
    """The path's segments, percent-decoded, without empty, ``.`` and ``..`` segments
    (RFC 3986 dot-segment removal; AWS also drops empty segments)."""
    out: list[bytes] = []
    for segment in raw_path.split(b"/"):
        decoded = unquote_to_bytes(segment)
        if decoded in (b"", b"."):
            continue
        if decoded == b"..":
            if out:
                out.pop()
            continue
        out.append(decoded)
    return out


def canonical_uri(raw_path: bytes) -> str:
    """The path normalised and URI-encoded twice, as for every service but S3."""
    segments = path_segments(raw_path)
    once = "/" + "/".join(quote(s, safe="~") for s in segments)
    if segments and raw_path.endswith(b"/"):
        once += "/"
    return quote(once, safe="/~")


def canonical_query(query: bytes, *, drop: frozenset[str] = frozenset()) -> str:
    """``key=value`` pairs, each URI-encoded (``-_.~`` kept), sorted by key then value."""
    if not query:
        return ""
    pairs = []
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        encoded_key = quote(unquote_to_bytes(key), safe=_QUERY_SAFE)
        if encoded_key in drop:
            continue
        pairs.append((encoded_key, quote(unquote_to_bytes(value), safe=_QUERY_SAFE)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(request: HttpRequest, names: tuple[str, ...]) -> str:
    """``name:value`` lines of the signed headers; repeated headers joined with ``,``,
    each value trimmed and its runs of spaces collapsed."""
    return "\n".join(
        f"{name}:" + ",".join(" ".join(v.split()) for v in request.header_values(name))
        for name in names
    )


# ---- presigning ------------------------------------------------------------------------------


def presign_query(
    *,
    method: str,
    host: str,
    raw_path: bytes,
    params: list[tuple[str, str]],
    access_key_id: str,
    secret: str,
    region: str,
    service: str,
    now: datetime,
    expires_s: int,
) -> str:
    """The query string (``params`` and the ``X-Amz-*`` ones, signed) of a URL that
    anyone holding it may call with ``method`` until ``expires_s`` from ``now``."""
    amz_date = _fmt(now)
    date = amz_date[:8]
    credential = f"{access_key_id}/{date}/{region}/{service}/{TERMINATOR}"
    all_params = [
        *params,
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    query = "&".join(
        f"{quote(k, safe=_QUERY_SAFE)}={quote(v, safe=_QUERY_SAFE)}" for k, v in all_params
    )
    request = HttpRequest(method, raw_path, query.encode(), (("host", host),))
    claim = Signature(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=("host",),
        signature="",
        amz_date=amz_date,
        timestamp=now,
        expires_s=expires_s,
    )
    payload_hash = hashlib.sha256(b"").hexdigest()  # the URL is for a call without a body
    signature = compute_signature(request, claim, secret, payload_hash=payload_hash)
    return f"{query}&X-Amz-Signature={signature}"
