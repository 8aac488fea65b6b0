"""The Lambda API's shapes: names and ARNs, pagination markers, error types, and the
configuration botocore parses, checked against botocore's own service model."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import botocore.session
import pytest

from nimbus.compat import shapes
from nimbus.domain.function import FunctionConfig
from nimbus.domain.version import Alias
from nimbus.errors import (
    AliasNotFoundError,
    CodeSizeQuotaError,
    ConcurrencyQuotaError,
    ForbiddenError,
    FunctionNotFoundError,
    InvalidSettingError,
    PayloadTooLargeError,
    RateQuotaError,
    ReservedConcurrencyError,
    UnavailableError,
    VersionInUseError,
)

MODEL = botocore.session.get_session().get_service_model("lambda")
SHA = hashlib.sha256(b"zip").hexdigest()


def _config(**changes: object) -> FunctionConfig:
    values: dict[str, object] = {
        "namespace": "team",
        "name": "hello",
        "runtime": "python3.11",
        "handler": "app.handler",
        "code_sha256": SHA,
        "code_size": 3,
        "env": {"A": "1"},
        "created_at": datetime(2026, 5, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    }
    values.update(changes)
    return FunctionConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "name", "qualifier", "account"),
    [
        ("hello", "hello", None, None),
        ("hello:prod", "hello", "prod", None),
        ("hello:$LATEST", "hello", "$LATEST", None),
        ("123456789012:function:hello", "hello", None, "123456789012"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:hello:7", "hello", "7", "123456789012"),
    ],
)
def test_function_names_and_arns(
    text: str, name: str, qualifier: str | None, account: str | None
) -> None:
    assert shapes.parse_function_name(text) == shapes.FunctionRef(name, qualifier, account)


def test_a_function_name_that_is_no_name() -> None:
    with pytest.raises(shapes.LambdaError) as exc:
        shapes.parse_function_name("arn:aws:s3:::bucket/key")
    assert exc.value.aws_type == "InvalidParameterValueException"


def test_accounts_are_stable_per_namespace() -> None:
    assert shapes.account_id("team") == shapes.account_id("team")
    assert shapes.account_id("team") != shapes.account_id("other")
    assert len(shapes.account_id("team")) == 12 and shapes.account_id("team").isdigit()


def test_function_configuration_has_botocore_members_only() -> None:
    out = shapes.function_configuration(_config(), "eu-west-1")
    members = MODEL.shape_for("FunctionConfiguration").members
    assert set(out) <= set(members)
    assert out["CodeSha256"] == base64.b64encode(bytes.fromhex(SHA)).decode()
    assert out["LastModified"] == "2026-05-01T12:00:00.123+0000"
    assert (
        out["FunctionArn"] == f"arn:aws:lambda:eu-west-1:{shapes.account_id('team')}:function:hello"
    )
    version = shapes.function_configuration(_config(version="3"), "eu-west-1")
    assert version["FunctionArn"].endswith(":hello:3") and version["Version"] == "3"
    assert version["RevisionId"] != out["RevisionId"]
    custom = shapes.function_configuration(_config(runtime="custom"), "eu-west-1")
    assert custom["Runtime"] == "provided.al2023"
    assert shapes.nimbus_runtime("provided.al2") == "custom"


def test_alias_configuration_has_botocore_members_only() -> None:
    alias = Alias("team", "hello", "live", 2, {3: 0.25}, "prod")
    out = shapes.alias_configuration(alias, "us-east-1")
    assert set(out) <= set(MODEL.shape_for("AliasConfiguration").members)
    assert out["RoutingConfig"] == {"AdditionalVersionWeights": {"3": 0.25}}
    assert shapes.alias_weights(out["RoutingConfig"]) == {3: 0.25}
    assert shapes.alias_weights({}) == {}
    with pytest.raises(shapes.LambdaError):
        shapes.alias_weights({"AdditionalVersionWeights": {"$LATEST": 0.1}})


def test_pagination_follows_markers_even_when_items_change() -> None:
    items = ["a", "b", "c", "d", "e"]
    page, marker = shapes.paginate(items, lambda x: [x], None, 2)
    assert (page, marker is not None) == (["a", "b"], True)
    page, marker = shapes.paginate(["a", "c", "d", "e"], lambda x: [x], marker, 2)  # b deleted
    assert page == ["c", "d"]
    page, marker = shapes.paginate(items, lambda x: [x], marker, 2)
    assert (page, marker) == (["e"], None)
    assert shapes.paginate(items, lambda x: [x], None, None) == (items, None)
    for bad in ("garbage!", base64.urlsafe_b64encode(b'{"a": 1}').decode()):
        with pytest.raises(shapes.LambdaError):
            shapes.paginate(items, lambda x: [x], bad, 2)
    with pytest.raises(shapes.LambdaError):
        shapes.paginate(items, lambda x: [x], None, 0)


@pytest.mark.parametrize(
    ("error", "aws_type", "status"),
    [
        (FunctionNotFoundError("x"), "ResourceNotFoundException", 404),
        (AliasNotFoundError("x"), "ResourceNotFoundException", 404),
        (InvalidSettingError("x"), "InvalidParameterValueException", 400),
        (VersionInUseError("x"), "ResourceConflictException", 409),
        (CodeSizeQuotaError("x"), "CodeStorageExceededException", 400),
        (PayloadTooLargeError("x"), "RequestTooLargeException", 413),
        (ForbiddenError("x"), "AccessDeniedException", 403),
        (UnavailableError("x"), "ServiceException", 500),
    ],
)
def test_nimbus_errors_map_to_lambda_error_types(
    error: Exception, aws_type: str, status: int
) -> None:
    mapped = shapes.from_nimbus(error)  # type: ignore[arg-type]
    assert (mapped.aws_type, mapped.status, mapped.message) == (aws_type, status, "x")
    known = {s.name for s in MODEL.error_shapes} | {"AccessDeniedException"}
    assert aws_type in known


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            ReservedConcurrencyError("x", retry_after_s=60),
            "ReservedFunctionConcurrentInvocationLimitExceeded",
        ),
        (RateQuotaError("x", retry_after_s=2), "CallerRateLimitExceeded"),
        (ConcurrencyQuotaError("x"), "ConcurrentInvocationLimitExceeded"),
    ],
)
def test_throttles_carry_their_reason_and_retry_after(error: Exception, reason: str) -> None:
    mapped = shapes.from_nimbus(error)  # type: ignore[arg-type]
    assert mapped.aws_type == "TooManyRequestsException" and mapped.status == 429
    assert mapped.body()["Reason"] == reason
    assert mapped.headers["Retry-After"] == mapped.body()["retryAfterSeconds"]
