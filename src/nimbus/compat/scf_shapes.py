"""Nimbus's objects, names and errors in the shapes of Tencent SCF's API 3.0.

Shapes follow the SCF models of ``tencentcloud-sdk-python-scf``
(``tencentcloud/scf/v20180416/models.py``): ``GetFunctionResponse``, ``Function``,
``Result``, ``Environment.Variables`` as ``[{"Key", "Value"}]``, ``Offset``/``Limit``
pagination with ``TotalCount``, and API 3.0's error codes (``ResourceNotFound.Function``,
``InvalidParameterValue.Runtime``...), which the SDK raises as
``TencentCloudSDKException`` with that code. Pure functions; no I/O.

Times are written as SCF writes them, ``2024-05-01 12:00:00`` (here in UTC).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from nimbus.domain.function import FunctionConfig
from nimbus.domain.invocation import FunctionError
from nimbus.domain.version import Alias
from nimbus.errors import (
    AliasNotFoundError,
    AuthError,
    CodeSizeQuotaError,
    ConcurrencyQuotaError,
    ConflictError,
    ForbiddenError,
    FunctionNotFoundError,
    FunctionsQuotaError,
    HandlerMissingError,
    InvalidJSONError,
    InvalidNameError,
    InvalidNamespaceNameError,
    InvalidPackageError,
    InvalidQualifierError,
    NamespaceNotFoundError,
    NimbusError,
    NotFoundError,
    PayloadTooLargeError,
    RateQuotaError,
    ReservedConcurrencyError,
    ThrottledError,
    UnavailableError,
    UnknownRuntimeError,
    ValidationError,
    VersionInUseError,
    VersionNotFoundError,
)

#: The SCF API version the SDK sends in ``X-TC-Version``.
API_VERSION = "2018-04-16"
#: SCF's runtime for code that brings its own ``bootstrap`` (Nimbus's ``custom``).
CUSTOM_RUNTIME = "CustomRuntime"
DEFAULT_HANDLER = "index.main_handler"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: The longest list a ``GET`` query may spell out (``Environment.Variables.N.Key``).
MAX_LIST_ITEMS = 1000
_PYTHON_RE = re.compile(r"^python(\d+)\.(\d+)$", re.IGNORECASE)
#: SCF's ``Nodejs18.15``, Nimbus's ``nodejs20``.
_NODE_RE = re.compile(r"^nodejs(\d+)(?:\.\d+)?$", re.IGNORECASE)


class ScfError(Exception):
    """An answer in API 3.0's error envelope: ``{"Response": {"Error": {"Code",
    "Message"}, "RequestId"}}`` (always with HTTP 200, as Tencent answers)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str, code: str = "InvalidParameterValue") -> ScfError:
    return ScfError(code, message)


def envelope(request_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"Response": {**body, "RequestId": request_id}}


def error_envelope(request_id: str, code: str, message: str) -> dict[str, Any]:
    return envelope(request_id, {"Error": {"Code": code, "Message": message}})


#: Nimbus's errors → API 3.0 error codes, most specific first.
_ERROR_CODES: tuple[tuple[type[NimbusError], str], ...] = (
    (ForbiddenError, "AuthFailure.UnauthorizedOperation"),
    (AuthError, "AuthFailure.SecretIdNotFound"),
    (FunctionNotFoundError, "ResourceNotFound.Function"),
    (VersionNotFoundError, "ResourceNotFound.Version"),
    (AliasNotFoundError, "ResourceNotFound.Alias"),
    (NamespaceNotFoundError, "ResourceNotFound.Namespace"),
    (NotFoundError, "ResourceNotFound"),
    (FunctionsQuotaError, "LimitExceeded.Function"),
    (CodeSizeQuotaError, "LimitExceeded.Quota"),
    (VersionInUseError, "UnsupportedOperation.AliasBind"),
    (ConflictError, "ResourceInUse"),
    (PayloadTooLargeError, "InvalidParameter.RequestTooLarge"),
    (InvalidJSONError, "InvalidParameterValue.Param"),
    (InvalidPackageError, "InvalidParameterValue.ZipFile"),
    (HandlerMissingError, "InvalidParameterValue.Handler"),
    (UnknownRuntimeError, "InvalidParameterValue.Runtime"),
    (InvalidNamespaceNameError, "InvalidParameterValue.Namespace"),
    (InvalidNameError, "InvalidParameterValue.FunctionName"),
    (InvalidQualifierError, "InvalidParameterValue.Qualifier"),
    (ValidationError, "InvalidParameterValue"),
    (RateQuotaError, "RequestLimitExceeded"),
    (ReservedConcurrencyError, "LimitExceeded.FunctionReservedConcurrencyMemory"),
    (ConcurrencyQuotaError, "LimitExceeded.TotalConcurrencyMemory"),
    (ThrottledError, "LimitExceeded.MaxCapacity"),
    (UnavailableError, "ResourceUnavailable"),
)


def from_nimbus(exc: NimbusError) -> ScfError:
    """The SCF error for a Nimbus error (its message kept: it says what to do)."""
    code = next((c for cls, c in _ERROR_CODES if isinstance(exc, cls)), "InternalError")
    message = exc.message
    if isinstance(exc, ThrottledError):
        message = f"{message} (retry after {exc.retry_after_s} s)"
    return ScfError(code, message)


# ---- reading parameters --------------------------------------------------------------------


def text(params: dict[str, Any], field: str, *, code: str = "InvalidParameterValue") -> str | None:
    value = params.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string", code)
    return value


def required_text(params: dict[str, Any], field: str, *, code: str = "MissingParameter") -> str:
    value = text(params, field)
    if not value:
        raise ScfError(code, f"the required parameter {field} is missing")
    return value


def integer(
    params: dict[str, Any], field: str, *, code: str = "InvalidParameterValue"
) -> int | None:
    """An integer parameter: a JSON number, or digits (as a ``GET`` query carries it)."""
    value = params.get(field)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{field} must be an integer", code)
    return value


def flag(params: dict[str, Any], field: str) -> bool:
    """SCF's switches are the strings ``TRUE`` and ``FALSE``."""
    value = params.get(field)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    raise invalid(f"{field} must be TRUE or FALSE, got {value!r}")


def environment(value: Any) -> dict[str, str]:
    """``{"Variables": [{"Key": "A", "Value": "1"}]}`` → ``{"A": "1"}``."""
    if value is None:
        return {}
    code = "InvalidParameterValue.Environment"
    variables = value.get("Variables") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(variables, list | None):
        raise invalid('Environment must be {"Variables": [{"Key": "NAME", "Value": "v"}]}', code)
    out: dict[str, str] = {}
    for item in variables or []:
        if not isinstance(item, dict) or not isinstance(item.get("Key"), str) or not item["Key"]:
            raise invalid(
                'each of Environment.Variables must be {"Key": "NAME", "Value": "v"}', code
            )
        item_value = item.get("Value", "")
        if not isinstance(item_value, str):
            raise invalid(
                f"the value of environment variable {item['Key']!r} must be a string", code
            )
        if item["Key"] in out:
            raise invalid(f"environment variable {item['Key']!r} is given twice", code)
        out[item["Key"]] = item_value
    return out


def is_default(value: Any) -> bool:
    """True for a setting given at a value that asks for nothing (tools send these)."""
    if value in (None, "", [], {}, "FALSE", False, 0):
        return True
    if isinstance(value, dict):
        return all(is_default(v) for v in value.values())
    return False


def refuse_unsupported(
    params: dict[str, Any], *, handled: set[str], defaults: dict[str, set[str]] | None = None
) -> None:
    """Refuse settings Nimbus cannot honour rather than drop them silently; ``defaults``
    names, per field, the values that ask for nothing on Nimbus either."""
    defaults = defaults or {}
    refused = sorted(
        field
        for field, value in params.items()
        if field not in handled
        and not is_default(value)
        and not (isinstance(value, str) and value in defaults.get(field, set()))
    )
    if refused:
        raise invalid(
            f"Nimbus's SCF API does not support {', '.join(refused)}; leave "
            f"{'it' if len(refused) == 1 else 'them'} out (docs/scf-api.md lists what is "
            "supported)",
            "UnsupportedOperation",
        )


def unflatten(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A ``GET`` query's parameters (``Environment.Variables.0.Key=A``) as the nested
    object a ``POST`` body would carry (``{"Environment": {"Variables": [{"Key": "A"}]}}``)."""
    root: dict[str, Any] = {}
    for dotted, value in pairs:
        parts = dotted.split(".")
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            child: Any = value if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(node, list):
                if not part.isdigit():
                    raise invalid(f"parameter {dotted!r} mixes list indexes and names")
                index = int(part)
                if index >= MAX_LIST_ITEMS:
                    raise invalid(
                        f"parameter {dotted!r}: lists take at most {MAX_LIST_ITEMS} items"
                    )
                while len(node) <= index:
                    node.append(None)
                if node[index] is None or last:
                    node[index] = child
                node = node[index]
            else:
                if not isinstance(node, dict):
                    raise invalid(f"parameter {dotted!r} conflicts with another one")
                if part not in node or last:
                    node[part] = child
                node = node[part]
    return root


# ---- runtimes -------------------------------------------------------------------------------


def nimbus_runtime(scf_runtime: str, available: Iterable[str]) -> str:
    """SCF's runtime name → one this server offers.

    ``Python3.X`` runs on ``python3.X``; when this server lacks that minor version, on
    the nearest newer one it has (Python keeps old code working across minor versions
    far more often than not; the function shows the runtime it really got).
    ``NodejsX.Y`` runs on ``nodejsX``, or the nearest newer major version here.
    ``CustomRuntime`` is ``custom``. Nimbus's own names are accepted too."""
    names = sorted(available)
    wanted = scf_runtime.strip()
    if wanted == CUSTOM_RUNTIME or wanted.lower() == "custom":
        return "custom"
    lower = {name.lower(): name for name in names}
    if wanted.lower() in lower:
        return lower[wanted.lower()]
    pythons = sorted(
        (int(m.group(1)), int(m.group(2)), name)
        for name in names
        if (m := _PYTHON_RE.match(name)) is not None
    )
    nodes = sorted((int(m.group(1)), name) for name in names if (m := _NODE_RE.match(name)))
    python = _PYTHON_RE.match(wanted)
    if python is not None:
        major, minor = int(python.group(1)), int(python.group(2))
        newer = [name for ma, mi, name in pythons if ma == major and mi >= minor]
        if newer:
            return newer[0]
    node = _NODE_RE.match(wanted)
    if node is not None:
        newer = [name for ma, name in nodes if ma >= int(node.group(1))]
        if newer:
            return newer[0]
    offered = ", ".join(
        [scf_runtime_name(n) for _ma, _mi, n in pythons]
        + [scf_runtime_name(n) for _ma, n in nodes]
        + [CUSTOM_RUNTIME]
    )
    raise invalid(
        f"Runtime {scf_runtime!r} is not available on this server; choose one of {offered}",
        "InvalidParameterValue.Runtime",
    )


def scf_runtime_name(runtime: str) -> str:
    """Nimbus's runtime name as SCF writes it: ``Python3.11``, ``Nodejs20``,
    ``CustomRuntime``."""
    if runtime == "custom":
        return CUSTOM_RUNTIME
    match = _PYTHON_RE.match(runtime)
    if match is not None:
        return f"Python{match.group(1)}.{match.group(2)}"
    node = _NODE_RE.match(runtime)
    if node is not None:
        return f"Nodejs{node.group(1)}"
    return runtime


# ---- identifiers and times ------------------------------------------------------------------


def scf_time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


def function_id(config: FunctionConfig) -> str:
    """SCF's ``FunctionId`` (``lam-`` and 8 characters), stable for one function: it
    changes only when the function is deleted and made again."""
    created = config.created_at.isoformat() if config.created_at else ""
    digest = hashlib.sha256(f"{config.namespace}/{config.name}/{created}".encode()).hexdigest()
    return f"lam-{digest[:8]}"


# ---- functions, versions, aliases ------------------------------------------------------------


def variables(env: dict[str, str]) -> dict[str, Any]:
    return {"Variables": [{"Key": k, "Value": v} for k, v in sorted(env.items())]}


def public_net(network: str) -> dict[str, Any]:
    """Nimbus's network setting as SCF's ``PublicNetConfig`` (``egress`` is SCF's public
    network access; fixed egress IPs do not exist here)."""
    return {
        "PublicNetStatus": "ENABLE" if network == "egress" else "DISABLE",
        "EipConfig": {"EipStatus": "DISABLE"},
    }


def function_summary(config: FunctionConfig) -> dict[str, Any]:
    """A ``Function`` of ``ListFunctions``."""
    return {
        "ModTime": scf_time(config.updated_at),
        "AddTime": scf_time(config.created_at),
        "Runtime": scf_runtime_name(config.runtime),
        "FunctionName": config.name,
        "FunctionId": function_id(config),
        "Namespace": config.namespace,
        "Status": "Active",
        "StatusDesc": "",
        "Description": config.description,
        "Tags": [],
        "Type": "Event",
        "StatusReasons": [],
        "TotalProvisionedConcurrencyMem": 0,
        "ReservedConcurrencyMem": (
            config.reserved_concurrency * config.memory_mb
            if config.reserved_concurrency is not None
            else 0
        ),
        "AsyncRunEnable": "FALSE",
        "TraceEnable": "FALSE",
    }


def function_detail(config: FunctionConfig, head: FunctionConfig, qualifier: str) -> dict[str, Any]:
    """``GetFunction``'s answer for the configuration ``qualifier`` names (``head`` is
    ``$LATEST``: a function's id and creation time are its head's)."""
    return {
        "ModTime": scf_time(config.updated_at or config.created_at),
        "CodeInfo": "",
        "Description": config.description,
        "Triggers": [],
        "Handler": config.handler,
        "CodeSize": config.code_size,
        "Timeout": config.timeout_s,
        "FunctionVersion": config.version,
        "MemorySize": config.memory_mb,
        "Runtime": scf_runtime_name(config.runtime),
        "FunctionName": config.name,
        "UseGpu": "FALSE",
        "Environment": variables(config.env),
        "CodeResult": "success",
        "CodeError": "",
        "ErrNo": 0,
        "Namespace": config.namespace,
        "Role": "",
        "InstallDependency": "FALSE",
        "Status": "Active",
        "StatusDesc": "",
        "ClsLogsetId": "",
        "ClsTopicId": "",
        "FunctionId": function_id(head),
        "Tags": [],
        "Type": "Event",
        "L5Enable": "FALSE",
        "Layers": [],
        "AddTime": scf_time(head.created_at),
        "PublicNetConfig": public_net(config.network),
        "OnsEnable": "FALSE",
        "AvailableStatus": "Available",
        "Qualifier": qualifier,
        "StatusReasons": [],
        "AsyncRunEnable": "FALSE",
        "TraceEnable": "FALSE",
        "DnsCache": "FALSE",
    }


def published_version(config: FunctionConfig) -> dict[str, Any]:
    """``PublishVersion``'s answer."""
    return {
        "FunctionVersion": config.version,
        "CodeSize": config.code_size,
        "MemorySize": config.memory_mb,
        "Description": config.description,
        "Handler": config.handler,
        "Timeout": config.timeout_s,
        "Runtime": scf_runtime_name(config.runtime),
        "Namespace": config.namespace,
    }


def alias_weights(routing: Any) -> dict[int, float]:
    """SCF's ``RoutingConfig`` → Nimbus's weights (``{}`` when absent or empty)."""
    code = "InvalidParameterValue.RoutingConfig"
    if routing is None:
        return {}
    if not isinstance(routing, dict):
        raise invalid("RoutingConfig must be an object", code)
    if routing.get("AddtionVersionMatchs"):
        raise invalid(
            "rule-based routing (AddtionVersionMatchs) is not supported on Nimbus; route by "
            "weight with AdditionalVersionWeights",
            code,
        )
    weights = routing.get("AdditionalVersionWeights") or []
    if not isinstance(weights, list):
        raise invalid(
            'AdditionalVersionWeights must be a list: [{"Version": "2", "Weight": 0.1}]', code
        )
    out: dict[int, float] = {}
    for item in weights:
        version = item.get("Version") if isinstance(item, dict) else None
        weight = item.get("Weight") if isinstance(item, dict) else None
        if not isinstance(version, str) or not version.isdigit() or int(version) < 1:
            raise invalid(
                f"each additional version must be a published version number, got {version!r}",
                code,
            )
        if isinstance(weight, str):
            try:
                weight = float(weight)
            except ValueError:
                weight = None
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise invalid(f"the weight of version {version} must be a number", code)
        out[int(version)] = float(weight)
    return out


def alias_detail(alias: Alias) -> dict[str, Any]:
    """``GetAlias``'s answer (and an ``Alias`` of ``ListAliases``)."""
    out: dict[str, Any] = {
        "FunctionVersion": str(alias.version),
        "Name": alias.name,
        "Description": alias.description,
        "AddTime": scf_time(alias.created_at),
        "ModTime": scf_time(alias.updated_at or alias.created_at),
        "RoutingConfig": {
            "AdditionalVersionWeights": [
                {"Version": str(v), "Weight": w} for v, w in sorted(alias.weights.items())
            ],
            "AddtionVersionMatchs": [],
        },
    }
    return out


# ---- invocation results ------------------------------------------------------------------------

#: Nimbus's function error types → SCF's function status codes (its "status code" table).
_STATUS_CODES: dict[str, int] = {
    "Sandbox.Timedout": 433,
    "Runtime.OutOfMemory": 434,
    "Runtime.HandlerNotFound": 437,
    "Runtime.ImportModuleError": 437,
    "Runtime.MalformedHandlerName": 437,
    "Runtime.ExitError": 439,
    "Runtime.UserCodeSyntaxError": 443,
    "Runtime.InitError": 443,
    "Runtime.StartError": 445,
    "Runtime.InitTimeout": 450,
    "Function.ResponseSizeTooLarge": 407,
}
#: A user code exception caught (SCF's 430).
USER_CODE_EXCEPTION = 430


def error_result(error: FunctionError) -> str:
    """A function error as SCF reports it: a JSON object with ``errorCode``,
    ``errorMessage``, ``stackTrace`` and the SCF ``statusCode`` (and Nimbus's
    ``errorType``)."""
    return json.dumps(
        {
            "errorCode": 1,
            "errorMessage": error.error_message,
            "errorType": error.error_type,
            "stackTrace": "\n".join(error.stack_trace),
            "statusCode": _STATUS_CODES.get(error.error_type, USER_CODE_EXCEPTION),
        },
        ensure_ascii=False,
    )
