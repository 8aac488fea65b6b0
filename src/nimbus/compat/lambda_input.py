"""Reading the Lambda API's request bodies: typed fields, Lambda's settings as Nimbus's,
and the settings Nimbus refuses because it cannot honour them (unless given at the value
it works with anyway: tools send defaults)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from nimbus.compat.shapes import (
    ARCHITECTURE,
    EPHEMERAL_STORAGE_MB,
    invalid_parameter,
    precondition_failed,
)
from nimbus.domain.version import LATEST

if TYPE_CHECKING:
    from nimbus.compat.lambda_api import Call

#: Fields Nimbus accepts and ignores: no effect here (every function shows one fixed role).
IGNORED = frozenset({"Role"})


def text_field(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise invalid_parameter(f"{field} must be a string")
    return value


def required_text(body: dict[str, Any], field: str) -> str:
    value = text_field(body, field)
    if not value:
        raise invalid_parameter(f"{field} is required")
    return value


def int_field(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_parameter(f"{field} must be an integer")
    return value


def flag(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise invalid_parameter(f"{field} must be true or false")
    return value


def settings(body: dict[str, Any]) -> dict[str, Any]:
    """Lambda's settings given in ``body``, as FunctionChanges fields."""
    out: dict[str, Any] = {}
    for field, name in (("MemorySize", "memory_mb"), ("Timeout", "timeout_s")):
        value = int_field(body, field)
        if value is not None:
            out[name] = value
    description = text_field(body, "Description")
    if description is not None:
        out["description"] = description
    if "Environment" in body:
        out["env"] = environment(body["Environment"])
    return out


def environment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    variables = value.get("Variables") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(variables, dict | None):
        raise invalid_parameter('Environment must be {"Variables": {"NAME": "value"}}')
    variables = variables or {}
    if not all(isinstance(v, str) for v in variables.values()):
        raise invalid_parameter("Environment variable values must be strings")
    return dict(variables)


def zip_file(code: Any, where: str) -> bytes:
    if not isinstance(code, dict):
        raise invalid_parameter(f"{where} must carry ZipFile (the zip, base64-encoded)")
    others = sorted(k for k in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri") if code.get(k))
    if others:
        raise invalid_parameter(
            f"Nimbus takes code as ZipFile only; {', '.join(others)} are not supported "
            "(upload the zip itself: ZipFile, or `--zip-file fileb://package.zip`)"
        )
    data = code.get("ZipFile")
    if not isinstance(data, str) or not data:
        raise invalid_parameter(f"{where} needs ZipFile: the zip, base64-encoded")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_parameter("ZipFile is not valid base64") from None


def alias_version(text: str) -> int:
    if text in (LATEST, f"{LATEST}.PUBLISHED"):
        raise invalid_parameter(
            "Nimbus aliases point to published versions, not to $LATEST: publish a version "
            "(PublishVersion) and point the alias at its number"
        )
    if not text.isdigit() or int(text) < 1:
        raise invalid_parameter(f"FunctionVersion must be a published version number, got {text!r}")
    return int(text)


def check_revision(body: dict[str, Any], current: str) -> None:
    wanted = text_field(body, "RevisionId")
    if wanted and wanted != current:
        raise precondition_failed(
            "The Revision Id provided does not match the latest Revision Id. Call the "
            "GetFunction/GetAlias API to retrieve the latest Revision Id"
        )


def max_items(call: Call) -> int | None:
    text = call.query.get("MaxItems")
    if text is None:
        return None
    if not text.isdigit():
        raise invalid_parameter(f"MaxItems must be a number, got {text!r}")
    return int(text)


def is_default(field: str, value: Any) -> bool:
    """True for a setting given at the value Nimbus works with anyway (tools send them)."""
    if value in (None, "", [], {}):
        return True
    if field == "PackageType":
        return bool(value == "Zip")
    if field == "Architectures":
        return bool(value == [ARCHITECTURE])
    if field == "TracingConfig" and isinstance(value, dict):
        return value.get("Mode") in (None, "PassThrough")
    if field == "EphemeralStorage" and isinstance(value, dict):
        return value.get("Size") in (None, EPHEMERAL_STORAGE_MB)
    if field == "SnapStart" and isinstance(value, dict):
        return value.get("ApplyOn") in (None, "None")
    if field == "LoggingConfig" and isinstance(value, dict):
        return value.get("LogFormat") in (None, "Text") and set(value) <= {"LogFormat", "LogGroup"}
    if isinstance(value, dict):  # VpcConfig with no subnets, DeadLetterConfig without target...
        return all(is_default("", v) for v in value.values())
    return False


def refuse_unsupported(body: dict[str, Any], *, handled: set[str]) -> None:
    """Refuse settings Nimbus cannot honour rather than drop them silently."""
    refused = sorted(
        field
        for field, value in body.items()
        if field not in handled and field not in IGNORED and not is_default(field, value)
    )
    if refused:
        raise invalid_parameter(
            f"Nimbus's Lambda API does not support {', '.join(refused)}; leave "
            f"{'it' if len(refused) == 1 else 'them'} out (see docs/lambda-api.md for what "
            "is supported)"
        )
