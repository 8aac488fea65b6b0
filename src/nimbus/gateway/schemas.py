"""Request and response bodies of the /v1 API (they make /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nimbus.domain.function import FunctionConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionPut(_Strict):
    runtime: str = Field(
        description="python3.11, another python3.X found on the machine, or custom"
    )
    handler: str = Field(description="module.function for Python; anything for custom")
    code_sha256: str = Field(description="hash returned by PUT /v1/code")
    memory_mb: int = 128
    timeout_s: int = 3
    env: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    max_instances: int | None = None


class FunctionPatch(_Strict):
    runtime: str | None = None
    handler: str | None = None
    code_sha256: str | None = None
    memory_mb: int | None = None
    timeout_s: int | None = None
    env: dict[str, str] | None = None
    description: str | None = None
    max_instances: int | None = None


class FunctionOut(BaseModel):
    name: str
    namespace: str
    runtime: str
    handler: str
    code_sha256: str
    code_size: int
    memory_mb: int
    timeout_s: int
    env: dict[str, str]
    description: str
    max_instances: int | None
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
            code_sha256=c.code_sha256,
            code_size=c.code_size,
            memory_mb=c.memory_mb,
            timeout_s=c.timeout_s,
            env=c.env,
            description=c.description,
            max_instances=c.max_instances,
            revision=c.revision,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class FunctionList(BaseModel):
    functions: list[FunctionOut]


class CodeOut(BaseModel):
    sha256: str
    size: int
    files: int


class RuntimeOut(BaseModel):
    name: str
    kind: Literal["python", "custom"]
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


class LogLineOut(BaseModel):
    ts: float
    request_id: str | None
    stream: Literal["stdout", "stderr", "platform"]
    message: str
    instance_id: str


class LogsOut(BaseModel):
    lines: list[LogLineOut]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 415, 429)
}
