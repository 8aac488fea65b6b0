"""Invocations: the request handed to an instance, and what came back."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class InvocationStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"  # the handler returned a value
    FAILED = "failed"  # the handler raised, timed out, crashed, or could not start


@dataclass(frozen=True)
class FunctionError:
    """A failure of the user's function, reported in Lambda's shape."""

    error_type: str
    error_message: str
    stack_trace: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "errorType": self.error_type,
            "errorMessage": self.error_message,
            "stackTrace": list(self.stack_trace),
        }

    @classmethod
    def from_payload(cls, payload: Any, default_type: str = "Unhandled") -> FunctionError:
        if isinstance(payload, dict):
            trace = payload.get("stackTrace") or ()
            if isinstance(trace, str):
                trace = (trace,)
            return cls(
                error_type=str(payload.get("errorType") or default_type),
                error_message=str(payload.get("errorMessage") or ""),
                stack_trace=tuple(str(x) for x in trace) if isinstance(trace, list | tuple) else (),
            )
        return cls(error_type=default_type, error_message=str(payload))


@dataclass(frozen=True)
class InvocationResult:
    request_id: str
    function_name: str
    version: str
    #: Raw JSON bytes the handler returned (when succeeded).
    payload: bytes | None
    error: FunctionError | None
    cold_start: bool
    duration_ms: float
    init_duration_ms: float | None = None
    log_tail: str | None = None

    @property
    def status(self) -> InvocationStatus:
        return InvocationStatus.FAILED if self.error else InvocationStatus.SUCCEEDED

    @property
    def billed_duration_ms(self) -> int:
        """Billed time rounds up to the next millisecond, at least 1 ms."""
        return max(1, int(-(-self.duration_ms // 1)))
