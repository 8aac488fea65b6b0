"""Request and response bodies of the /v1 API (they make /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from nimbus.domain.audit import AuditRecord
from nimbus.domain.function import (
    ASYNC_MAX_AGE_S_RANGE,
    ASYNC_MAX_ATTEMPTS_RANGE,
    DEFAULT_ASYNC_MAX_AGE_S,
    DEFAULT_ASYNC_MAX_ATTEMPTS,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    MAX_DESCRIPTION_CHARS,
    MAX_INSTANCES_RANGE,
    MEMORY_MB_RANGE,
    NAME_RE,
    TIMEOUT_S_RANGE,
    FunctionConfig,
)
from nimbus.domain.keys import ApiKey
from nimbus.domain.namespace import Namespace, NamespaceUsage
from nimbus.domain.version import Alias as AliasDomain

#: A function or namespace name in a path: 1-64 letters, digits, '-' or '_', from a letter.
Name = Annotated[
    str,
    Path(
        pattern=NAME_RE.pattern,
        description="1-64 letters, digits, '-' or '_', starting with a letter",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_RUNTIME_DOC = (
    "python3.11, another python3.X or nodejsN found on the machine (GET /v1/runtimes), or custom"
)
_HANDLER_DOC = (
    "module.function for Python; file.function for Node.js; anything for custom; "
    "module:app (Python) makes the function an HTTP service serving that WSGI/ASGI app"
)
_SHA256_PATTERN = r"^[0-9a-f]{64}$"
_NETWORK_DOC = (
    "none (default): the instance reaches only its Runtime API; "
    "egress: it may also reach outside networks, never the host or other instances"
)
Network = Literal["none", "egress"]
_DESTINATION_DOC = (
    "A function of the same namespace (not this one) that receives a record of each "
    "asynchronous event's outcome (on_failure: after its last attempt; the failed event "
    "also stays in the dead letters, where it can be re-driven)"
)


class FunctionPut(_Strict):
    runtime: str = Field(description=_RUNTIME_DOC)
    handler: str = Field(min_length=1, max_length=256, description=_HANDLER_DOC)
    code_sha256: str = Field(pattern=_SHA256_PATTERN, description="hash returned by PUT /v1/code")
    memory_mb: int = Field(default=DEFAULT_MEMORY_MB, ge=MEMORY_MB_RANGE[0], le=MEMORY_MB_RANGE[1])
    timeout_s: int = Field(default=DEFAULT_TIMEOUT_S, ge=TIMEOUT_S_RANGE[0], le=TIMEOUT_S_RANGE[1])
    env: dict[str, str] = Field(default_factory=dict)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)
    max_instances: int | None = Field(
        default=None, ge=MAX_INSTANCES_RANGE[0], le=MAX_INSTANCES_RANGE[1]
    )
    network: Network = Field(default="none", description=_NETWORK_DOC)
    async_max_attempts: int = Field(
        default=DEFAULT_ASYNC_MAX_ATTEMPTS,
        ge=ASYNC_MAX_ATTEMPTS_RANGE[0],
        le=ASYNC_MAX_ATTEMPTS_RANGE[1],
        description="Attempts per asynchronous event (1 + retries)",
    )
    async_max_age_s: int = Field(
        default=DEFAULT_ASYNC_MAX_AGE_S,
        ge=ASYNC_MAX_AGE_S_RANGE[0],
        le=ASYNC_MAX_AGE_S_RANGE[1],
        description="Oldest an asynchronous event may get before it is given up",
    )
    on_success: str | None = Field(
        default=None, pattern=NAME_RE.pattern, description=_DESTINATION_DOC
    )
    on_failure: str | None = Field(
        default=None, pattern=NAME_RE.pattern, description=_DESTINATION_DOC
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables stored encrypted and never shown again "
        "(responses list only their names in secret_env_keys)",
    )


class FunctionPatch(_Strict):
    runtime: str | None = Field(default=None, description=_RUNTIME_DOC)
    handler: str | None = Field(default=None, min_length=1, max_length=256)
    code_sha256: str | None = Field(default=None, pattern=_SHA256_PATTERN)
    memory_mb: int | None = Field(default=None, ge=MEMORY_MB_RANGE[0], le=MEMORY_MB_RANGE[1])
    timeout_s: int | None = Field(default=None, ge=TIMEOUT_S_RANGE[0], le=TIMEOUT_S_RANGE[1])
    env: dict[str, str] | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    max_instances: int | None = Field(
        default=None, ge=MAX_INSTANCES_RANGE[0], le=MAX_INSTANCES_RANGE[1]
    )
    network: Network | None = Field(default=None, description=_NETWORK_DOC)
    async_max_attempts: int | None = Field(
        default=None, ge=ASYNC_MAX_ATTEMPTS_RANGE[0], le=ASYNC_MAX_ATTEMPTS_RANGE[1]
    )
    async_max_age_s: int | None = Field(
        default=None, ge=ASYNC_MAX_AGE_S_RANGE[0], le=ASYNC_MAX_AGE_S_RANGE[1]
    )
    on_success: str | None = Field(
        default=None, pattern=NAME_RE.pattern, description=_DESTINATION_DOC + " (null clears)"
    )
    on_failure: str | None = Field(
        default=None, pattern=NAME_RE.pattern, description=_DESTINATION_DOC + " (null clears)"
    )
    secret_env: dict[str, str] | None = Field(
        default=None, description="Replaces the whole secret map when given"
    )


class FunctionOut(BaseModel):
    name: str
    namespace: str
    runtime: str
    handler: str
    type: Literal["event", "service"] = Field(
        description="From the handler: event (module.function, invoked with events) or "
        "service (module:app, an HTTP service answering at its URL)"
    )
    code_sha256: str
    code_size: int
    memory_mb: int
    timeout_s: int
    env: dict[str, str]
    description: str
    max_instances: int | None
    network: str
    secret_env_keys: list[str] = Field(description="Names of the secret variables (never values)")
    reserved_concurrency: int | None = Field(
        description="Cap on the function's concurrent instances across its versions "
        "(0: disabled; null: none)"
    )
    async_max_attempts: int
    async_max_age_s: int
    on_success: str | None
    on_failure: str | None
    version: str = Field(description="$LATEST for the editable head, else the version number")
    revision: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, c: FunctionConfig) -> FunctionOut:
        return cls(
            name=c.name,
            namespace=c.namespace,
            runtime=c.runtime,
            handler=c.handler,
            type="service" if c.is_service else "event",
            code_sha256=c.code_sha256,
            code_size=c.code_size,
            memory_mb=c.memory_mb,
            timeout_s=c.timeout_s,
            env=c.env,
            description=c.description,
            max_instances=c.max_instances,
            network=c.network,
            secret_env_keys=sorted(c.secret_env),
            reserved_concurrency=c.reserved_concurrency,
            async_max_attempts=c.async_max_attempts,
            async_max_age_s=c.async_max_age_s,
            on_success=c.on_success,
            on_failure=c.on_failure,
            version=c.version,
            revision=c.revision,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class FunctionList(BaseModel):
    functions: list[FunctionOut]


#: An invocation target: a function name with an optional ``:qualifier``.
QualifiedName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}(:(\$LATEST|[1-9][0-9]{0,9}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*))?$",
        max_length=64 + 1 + 128,
        description="NAME, NAME:$LATEST, NAME:3 (a version) or NAME:prod (an alias)",
    ),
]
AliasName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*$",
        max_length=128,
        description="1-128 letters, digits, '-' or '_', not only digits",
    ),
]
#: ``$LATEST``, a version number or an alias, as ``?qualifier=`` on an invocation.
QUALIFIER_PATTERN = r"^(\$LATEST|[1-9][0-9]{0,9}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*)$"
Qualifier = Annotated[
    str,
    Path(
        pattern=r"^([1-9][0-9]{0,9}|[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*)$",
        max_length=128,
        description="a version number or an alias",
    ),
]


class PublishIn(_Strict):
    description: str | None = Field(
        default=None,
        max_length=MAX_DESCRIPTION_CHARS,
        description="The version's description (default: the function's)",
    )
    prewarm: bool = Field(
        default=False, description="Start one instance of the version now, before any call"
    )


class VersionList(BaseModel):
    versions: list[FunctionOut]


class AliasIn(_Strict):
    version: int = Field(ge=1, le=2**31 - 1, description="The version the alias points to")
    weights: dict[
        Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,9}$")],
        Annotated[float, Field(gt=0, lt=1)],
    ] = Field(
        default_factory=dict,
        max_length=1,
        json_schema_extra={"additionalProperties": False},
        description='At most one other version and the share of calls it gets, e.g. {"4": 0.1}',
    )
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)


class AliasOut(BaseModel):
    name: str
    function: str
    version: int
    weights: dict[str, float]
    description: str
    revision: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, a: AliasDomain) -> AliasOut:
        return cls(
            name=a.name,
            function=a.function,
            version=a.version,
            weights={str(k): v for k, v in a.weights.items()},
            description=a.description,
            revision=a.revision,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class AliasList(BaseModel):
    aliases: list[AliasOut]


class ConcurrencyIn(_Strict):
    reserved: int = Field(
        ge=0,
        le=MAX_INSTANCES_RANGE[1],
        description="Most instances of the function at once, all versions together; 0 disables it",
    )


class ConcurrencyOut(BaseModel):
    reserved: int | None


class ProvisionedIn(_Strict):
    count: int = Field(
        ge=0, le=MAX_INSTANCES_RANGE[1], description="Instances kept initialised (0 removes)"
    )


class ProvisionedVersionOut(BaseModel):
    wanted: int
    ready: int


class ProvisionedOut(BaseModel):
    qualifier: str
    requested: int
    ready: int = Field(description="Initialised instances now, all its versions together")
    versions: dict[str, ProvisionedVersionOut]


class ProvisionedList(BaseModel):
    provisioned: list[ProvisionedOut]


class CodeOut(BaseModel):
    sha256: str
    size: int
    files: int


class RuntimeOut(BaseModel):
    name: str
    kind: Literal["python", "node", "custom"]
    version: str | None


class RuntimeList(BaseModel):
    runtimes: list[RuntimeOut]


class InvocationError(BaseModel):
    errorType: str  # Lambda's field names
    errorMessage: str
    stackTrace: list[str]


class InvocationOut(BaseModel):
    request_id: str
    function_name: str
    version: str
    status: Literal["succeeded", "failed"]
    result: Any = None
    error: InvocationError | None = None
    cold_start: bool
    duration_ms: float
    billed_duration_ms: int
    init_duration_ms: float | None
    log_tail: str | None = None


class AsyncInvocationOut(BaseModel):
    request_id: str
    function_name: str
    qualifier: str | None
    status: Literal["queued", "running", "succeeded", "failed"]
    attempts: int = Field(description="Attempts so far (the running one included)")
    max_attempts: int
    created_at: float = Field(description="Seconds since the epoch")
    finished_at: float | None
    next_attempt_at: float | None = Field(description="When a queued event runs next")
    result: Any = None
    error: InvocationError | None = Field(description="The most recent failure")
    dead_reason: str | None = Field(description="attempts_exhausted or age_exceeded")
    event: Any = Field(description="The event as sent")


class DeadLetterList(BaseModel):
    dead_letters: list[AsyncInvocationOut]


class RedriveIn(_Strict):
    request_ids: list[str] | None = Field(
        default=None, max_length=1000, description="Only these (default: the oldest ones)"
    )
    limit: int = Field(default=1000, ge=1, le=10_000)


class RedriveOut(BaseModel):
    redriven: int


class TriggerIn(_Strict):
    name: str = Field(
        pattern=NAME_RE.pattern, description="The trigger's name, unique per function"
    )
    type: Literal["timer", "http", "object", "redis-stream"] = Field(
        description="The event source (see docs/triggers.md)"
    )
    qualifier: str | None = Field(
        default=None,
        pattern=QUALIFIER_PATTERN,
        max_length=128,
        description="Version or alias the trigger invokes (default $LATEST)",
    )
    enabled: bool = True
    config: dict[str, Any] = Field(
        default_factory=dict,
        description='timer: {"schedule": "*/10 * * * * *" | "rate(5 minutes)", "timezone": '
        '"Asia/Shanghai", "payload": {...}, "catch_up": "latest" | "all" | "none"}; '
        'http: {"auth": "key" | "public"}; redis-stream: {"url": "redis://host:6379/0", '
        '"stream": "orders", "group", "batch_size", "batch_window_ms", "start": "$" | "0", '
        '"max_attempts"}',
    )


class TriggerPatch(_Strict):
    enabled: bool


class TriggerOut(BaseModel):
    name: str
    function: str
    type: str
    qualifier: str | None
    enabled: bool
    config: dict[str, Any]
    last_fired: datetime | None = Field(description="timer: the newest tick fired")
    url: str | None = Field(description="http: the function URL")
    status: str | None = Field(
        default=None,
        description="redis-stream: what its consumer does on this server now (starting, "
        "consuming, throttled, error, stopping, stopped)",
    )
    last_error: str | None = Field(
        default=None, description="redis-stream: its consumer's newest error (e.g. unreachable)"
    )
    created_at: datetime | None
    updated_at: datetime | None


class TriggerList(BaseModel):
    triggers: list[TriggerOut]


class LogLineOut(BaseModel):
    ts: float
    request_id: str | None
    stream: Literal["stdout", "stderr", "platform"]
    message: str
    instance_id: str


class LogsOut(BaseModel):
    lines: list[LogLineOut]


# ---- namespaces ----------------------------------------------------------------

_QUOTA_DOCS = {
    "max_functions": "Functions the namespace may hold (null: unlimited)",
    "max_code_bytes": "Total bytes of its functions' code packages (null: unlimited)",
    "max_concurrent_instances": "Instances of all its functions at once (null: unlimited)",
    "max_requests_per_s": "Invocations per second, bursts of twice that (null: unlimited)",
}


class QuotasIn(_Strict):
    """Quotas to set; a quota left out keeps its value (create: the server default)."""

    max_functions: int | None = Field(
        default=None, gt=0, le=1_000_000, description=_QUOTA_DOCS["max_functions"]
    )
    max_code_bytes: int | None = Field(
        default=None, gt=0, le=2**53, description=_QUOTA_DOCS["max_code_bytes"]
    )
    max_concurrent_instances: int | None = Field(
        default=None, gt=0, le=100_000, description=_QUOTA_DOCS["max_concurrent_instances"]
    )
    max_requests_per_s: float | None = Field(
        default=None, gt=0, le=1e9, description=_QUOTA_DOCS["max_requests_per_s"]
    )


class NamespaceCreate(QuotasIn):
    name: str = Field(
        pattern=NAME_RE.pattern,
        description="1-64 letters, digits, '-' or '_', starting with a letter",
    )


class QuotasOut(BaseModel):
    max_functions: int | None
    max_code_bytes: int | None
    max_concurrent_instances: int | None
    max_requests_per_s: float | None


class UsageOut(BaseModel):
    functions: int
    code_bytes: int
    instances: int = Field(description="Instances running now (starting ones included)")


class NamespaceOut(BaseModel):
    name: str
    created_at: datetime | None
    quotas: QuotasOut
    usage: UsageOut | None = None

    @classmethod
    def of(cls, n: Namespace, usage: NamespaceUsage | None = None) -> NamespaceOut:
        return cls(
            name=n.name,
            created_at=n.created_at,
            quotas=QuotasOut(**n.quotas.to_dict()),
            usage=UsageOut(**usage.__dict__) if usage is not None else None,
        )


class NamespaceList(BaseModel):
    namespaces: list[NamespaceOut]


# ---- keys ----------------------------------------------------------------------


class KeyCreate(_Strict):
    namespace: str | None = Field(
        default=None,
        pattern=NAME_RE.pattern,
        description="Default: the namespace the call acts in",
    )
    role: Literal["admin", "developer", "invoker"]
    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f]*[^\x00-\x1f\s][^\x00-\x1f]*$",
        description="What the key is for, e.g. ci-deploy (1-128 printable characters)",
    )


class KeyOut(BaseModel):
    id: str
    namespace: str
    role: str = Field(description="admin, developer or invoker")
    name: str
    created_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> KeyOut:
        return cls(
            id=k.id,
            namespace=k.namespace,
            role=k.role.value,
            name=k.name,
            created_at=k.created_at,
        )


class KeyCreated(KeyOut):
    secret: str = Field(description="The API key itself: shown only in this answer")
    access_key_id: str = Field(
        description="AWS Signature V4 access key id of this key, for the Lambda-compatible API"
    )
    secret_access_key: str = Field(description="Its secret access key: shown only in this answer")


class KeyList(BaseModel):
    keys: list[KeyOut]


# ---- audit ---------------------------------------------------------------------


class AuditOut(BaseModel):
    id: int
    ts: datetime
    key_id: str
    key_name: str
    role: str
    namespace: str
    action: str
    target: str
    details: dict[str, Any]

    @classmethod
    def of(cls, r: AuditRecord) -> AuditOut:
        return cls(**r.__dict__)


class AuditList(BaseModel):
    entries: list[AuditOut]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 415, 429)
}
