"""Nimbus's objects, names and errors in the shapes of the AWS Lambda API.

Shapes follow botocore's service model (``data/lambda/2015-03-31/service-2.json``):
``FunctionConfiguration``, ``AliasConfiguration``, the ``Marker``/``NextMarker``
pagination and the error types clients turn into exception classes. Pure
functions; no I/O.

Identifiers: each namespace is one fake AWS account (12 digits derived from its
name), so ARNs are well formed and stable: ``arn:aws:lambda:REGION:ACCOUNT:function:NAME``,
with the region the client signed for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import platform
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from nimbus.domain.function import NAME_RE, FunctionConfig
from nimbus.domain.version import LATEST, Alias
from nimbus.errors import (
    AuthError,
    CodeSizeQuotaError,
    ConcurrencyQuotaError,
    ConflictError,
    ForbiddenError,
    InvalidJSONError,
    NimbusError,
    NotFoundError,
    PayloadTooLargeError,
    RateQuotaError,
    ReservedConcurrencyError,
    ThrottledError,
    UnsupportedMediaError,
    ValidationError,
)

#: The machine's architecture, as Lambda names it.
ARCHITECTURE = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
#: Lambda's runtimes for code that brings its own ``bootstrap`` (Nimbus's ``custom``).
PROVIDED_RUNTIMES = ("provided.al2023", "provided.al2", "provided")
EPHEMERAL_STORAGE_MB = 512
DEFAULT_MAX_ITEMS = 50
MAX_ITEMS = 10_000

# arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER], or ACCOUNT:function:NAME,
# or NAME[:QUALIFIER] (botocore's FunctionName pattern).
_FUNCTION_NAME_RE = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:)?"
    r"(?:[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d:)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?$"
)


class LambdaError(Exception):
    """An answer in the Lambda API's error shape: ``x-amzn-ErrorType`` and a JSON body."""

    def __init__(
        self,
        aws_type: str,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.aws_type = aws_type
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        # Each error shape names its message member "message" or "Message";
        # botocore reads either for the exception's text.
        key = "Message" if self.aws_type in _CAPITAL_MESSAGE else "message"
        return {"Type": "User" if self.status < 500 else "Service", key: self.message, **self.extra}


_CAPITAL_MESSAGE = frozenset({"ResourceNotFoundException", "ServiceException"})


def invalid_parameter(message: str) -> LambdaError:
    return LambdaError("InvalidParameterValueException", 400, message)


def not_found(message: str) -> LambdaError:
    return LambdaError("ResourceNotFoundException", 404, message)


def conflict(message: str) -> LambdaError:
    return LambdaError("ResourceConflictException", 409, message)


def precondition_failed(message: str) -> LambdaError:
    return LambdaError("PreconditionFailedException", 412, message)


def service_error(message: str) -> LambdaError:
    return LambdaError("ServiceException", 500, message)


#: Nimbus's errors → Lambda's error types, most specific first.
_ERROR_TYPES: tuple[tuple[type[NimbusError], str, int], ...] = (
    (ForbiddenError, "AccessDeniedException", 403),
    (AuthError, "UnrecognizedClientException", 403),
    (NotFoundError, "ResourceNotFoundException", 404),
    (CodeSizeQuotaError, "CodeStorageExceededException", 400),
    (ConflictError, "ResourceConflictException", 409),
    (PayloadTooLargeError, "RequestTooLargeException", 413),
    (UnsupportedMediaError, "UnsupportedMediaTypeException", 415),
    (InvalidJSONError, "InvalidRequestContentException", 400),
    (ValidationError, "InvalidParameterValueException", 400),
    (ThrottledError, "TooManyRequestsException", 429),
)

#: Why a call was throttled, in ``TooManyRequestsException.Reason``'s words.
_THROTTLE_REASONS: tuple[tuple[type[ThrottledError], str], ...] = (
    (ReservedConcurrencyError, "ReservedFunctionConcurrentInvocationLimitExceeded"),
    (RateQuotaError, "CallerRateLimitExceeded"),
    (ConcurrencyQuotaError, "ConcurrentInvocationLimitExceeded"),
    (ThrottledError, "ConcurrentInvocationLimitExceeded"),
)


def from_nimbus(exc: NimbusError) -> LambdaError:
    """The Lambda error for a Nimbus error (its message kept: it says what to do)."""
    found = next(((t, s) for c, t, s in _ERROR_TYPES if isinstance(exc, c)), None)
    if found is None:
        return service_error(exc.message)
    aws_type, status = found
    if isinstance(exc, ThrottledError):
        reason = next(r for c, r in _THROTTLE_REASONS if isinstance(exc, c))
        return LambdaError(
            aws_type,
            status,
            exc.message,
            headers={"Retry-After": str(exc.retry_after_s)},
            extra={"Reason": reason, "retryAfterSeconds": str(exc.retry_after_s)},
        )
    return LambdaError(aws_type, status, exc.message)


# ---- names and identifiers -----------------------------------------------------------------


def account_id(namespace: str) -> str:
    """The namespace's fake AWS account id: 12 digits, stable, derived from its name."""
    digest = hashlib.sha256(f"nimbus-namespace:{namespace}".encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**12).zfill(12)


def function_arn(region: str, namespace: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{account_id(namespace)}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def role_arn(namespace: str) -> str:
    """Nimbus has no IAM: every function shows this well-formed, fixed role."""
    return f"arn:aws:iam::{account_id(namespace)}:role/nimbus-function"


@dataclass(frozen=True)
class FunctionRef:
    """A ``FunctionName`` as Lambda accepts it: a name, a partial or full ARN, with an
    optional ``:qualifier``."""

    name: str
    qualifier: str | None
    account: str | None


def parse_function_name(text: str) -> FunctionRef:
    match = _FUNCTION_NAME_RE.match(text)
    if match is None:
        raise invalid_parameter(
            f"FunctionName {text!r} is not a function name, a partial ARN "
            "(ACCOUNT:function:NAME) or an ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)"
        )
    return FunctionRef(match["name"], match["qualifier"], match["account"])


def valid_new_name(name: str) -> str:
    """A name Nimbus can hold (stricter than Lambda's: 1-64 chars, from a letter, no dots)."""
    if not NAME_RE.match(name):
        raise invalid_parameter(
            f"function name {name!r} is not valid on Nimbus: use 1-64 letters, digits, '-' "
            "or '_', starting with a letter"
        )
    return name


def lambda_runtime(runtime: str) -> str:
    if re.fullmatch(r"nodejs\d+", runtime):
        return runtime + ".x"  # Lambda's name for Nimbus's nodejs20
    return PROVIDED_RUNTIMES[0] if runtime == "custom" else runtime


def nimbus_runtime(runtime: str) -> str:
    if re.fullmatch(r"nodejs\d+\.x", runtime):
        return runtime.removesuffix(".x")
    return "custom" if runtime in PROVIDED_RUNTIMES else runtime


# ---- configurations ------------------------------------------------------------------------


def timestamp(moment: datetime | None) -> str:
    """Lambda's ``LastModified`` form: ``2024-05-01T12:00:00.000+0000``."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def code_sha256(hex_digest: str) -> str:
    """Lambda's ``CodeSha256``: the base64 of the raw SHA-256 of the zip."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def revision_id(config: FunctionConfig) -> str:
    """Changes whenever $LATEST changes; fixed for a published version."""
    created = config.created_at.isoformat() if config.created_at else ""
    revision = config.revision if config.version == LATEST else 0
    seed = f"{config.namespace}/{config.name}/{config.version}/{revision}/{created}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


def alias_revision_id(alias: Alias) -> str:
    created = alias.created_at.isoformat() if alias.created_at else ""
    seed = f"{alias.namespace}/{alias.function}/alias/{alias.name}/{alias.revision}/{created}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


def function_configuration(
    config: FunctionConfig, region: str, arn_qualifier: str | None = None
) -> dict[str, Any]:
    """A ``FunctionConfiguration``; ``arn_qualifier`` qualifies its ``FunctionArn``
    (by default a published version's number, nothing for $LATEST)."""
    if arn_qualifier is None and config.version != LATEST:
        arn_qualifier = config.version
    out: dict[str, Any] = {
        "FunctionName": config.name,
        "FunctionArn": function_arn(region, config.namespace, config.name, arn_qualifier),
        "Runtime": lambda_runtime(config.runtime),
        "Role": role_arn(config.namespace),
        "Handler": config.handler,
        "CodeSize": config.code_size,
        "Description": config.description,
        "Timeout": config.timeout_s,
        "MemorySize": config.memory_mb,
        "LastModified": timestamp(config.updated_at),
        "CodeSha256": code_sha256(config.code_sha256),
        "Version": config.version,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": revision_id(config),
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": [ARCHITECTURE],
        "EphemeralStorage": {"Size": EPHEMERAL_STORAGE_MB},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{config.name}"},
    }
    if config.env:
        out["Environment"] = {"Variables": dict(config.env)}
    return out


def alias_configuration(alias: Alias, region: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AliasArn": function_arn(region, alias.namespace, alias.function, alias.name),
        "Name": alias.name,
        "FunctionVersion": str(alias.version),
        "Description": alias.description,
        "RevisionId": alias_revision_id(alias),
    }
    if alias.weights:
        out["RoutingConfig"] = {
            "AdditionalVersionWeights": {str(v): w for v, w in alias.weights.items()}
        }
    return out


def alias_weights(routing: Any) -> dict[int, float]:
    """``RoutingConfig`` → Nimbus's weights (``{}`` when absent or empty)."""
    if routing is None:
        return {}
    if not isinstance(routing, dict):
        raise invalid_parameter("RoutingConfig must be an object")
    weights = routing.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict):
        raise invalid_parameter('AdditionalVersionWeights must map versions to weights: {"2": 0.1}')
    out: dict[int, float] = {}
    for version, weight in weights.items():
        if not isinstance(version, str) or not version.isdigit() or int(version) < 1:
            raise invalid_parameter(
                f"AdditionalVersionWeights keys are published version numbers, got {version!r}"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise invalid_parameter(f"the weight of version {version} must be a number")
        out[int(version)] = float(weight)
    return out


# ---- pagination ----------------------------------------------------------------------------

T = TypeVar("T")


def paginate(
    items: Sequence[T], key: Callable[[T], list[Any]], marker: str | None, max_items: int | None
) -> tuple[list[T], str | None]:
    """One page of ``items`` (sorted by ``key``) after ``marker``, and the marker of the
    next page (None on the last). Markers are opaque: the key of the last item given, so
    a page is right even when items were added or removed in between."""
    limit = DEFAULT_MAX_ITEMS if max_items is None else max_items
    if not 1 <= limit <= MAX_ITEMS:
        raise invalid_parameter(f"MaxItems must be between 1 and {MAX_ITEMS}, got {limit}")
    ordered = sorted(items, key=key)
    if marker:
        after = _decode_marker(marker)
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:limit]
    if len(ordered) > limit:
        return page, _encode_marker(key(page[-1]))
    return page, None


def _encode_marker(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode("ascii")


def _decode_marker(marker: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(marker.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        key = None
    if not isinstance(key, list):
        raise invalid_parameter(
            "Marker is not one this server gave out; pass the NextMarker of the previous page"
        )
    return key


def version_sort_key(version: str) -> list[Any]:
    """$LATEST first, then published versions by number."""
    return [0, 0] if version == LATEST else [1, int(version)]
