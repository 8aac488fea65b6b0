"""The Nimbus exception tree and its stable error codes.

Every error a user can cause is a :class:`NimbusError` subclass carrying a
stable ``code`` (``Family.Reason``), an HTTP ``status`` and a message that says
what to do. The gateway turns them into ``{"error": {"code", "message"}}``.

    NimbusError
    ├── ValidationError            400  Request.Invalid
    │   ├── InvalidNameError       400  Function.InvalidName
    │   ├── InvalidSettingError    400  Function.InvalidSetting
    │   ├── InvalidJSONError       400  Request.InvalidJSON
    │   ├── UnsupportedMediaError  415  Request.UnsupportedMediaType
    │   ├── InvalidPackageError    400  Code.InvalidPackage
    │   ├── HandlerMissingError    400  Code.HandlerNotFound
    │   └── UnknownRuntimeError    400  Function.UnknownRuntime
    ├── AuthError                  401  Auth.Unauthorized
    ├── ForbiddenError             403  Auth.Forbidden
    ├── NotFoundError              404  Resource.NotFound
    │   ├── FunctionNotFoundError  404  Function.NotFound
    │   └── CodeNotFoundError      404  Code.NotFound
    ├── ConflictError              409  Resource.Conflict
    ├── PayloadTooLargeError       413  Request.PayloadTooLarge
    ├── ThrottledError             429  Invocation.Throttled
    └── UnavailableError           503  Platform.Unavailable

Function-side failures (the handler raised, timed out, crashed) are not
exceptions at this boundary: they are results, see ``nimbus.domain.invocation``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NimbusError(Exception):
    """Base of every error Nimbus reports to a user."""

    code: ClassVar[str] = "Platform.Error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ValidationError(NimbusError):
    code = "Request.Invalid"
    status = 400


class InvalidNameError(ValidationError):
    code = "Function.InvalidName"


class InvalidSettingError(ValidationError):
    code = "Function.InvalidSetting"


class InvalidJSONError(ValidationError):
    code = "Request.InvalidJSON"


class UnsupportedMediaError(ValidationError):
    code = "Request.UnsupportedMediaType"
    status = 415


class InvalidPackageError(ValidationError):
    code = "Code.InvalidPackage"


class HandlerMissingError(ValidationError):
    code = "Code.HandlerNotFound"


class UnknownRuntimeError(ValidationError):
    code = "Function.UnknownRuntime"


class AuthError(NimbusError):
    code = "Auth.Unauthorized"
    status = 401


class ForbiddenError(NimbusError):
    code = "Auth.Forbidden"
    status = 403


class NotFoundError(NimbusError):
    code = "Resource.NotFound"
    status = 404


class FunctionNotFoundError(NotFoundError):
    code = "Function.NotFound"


class CodeNotFoundError(NotFoundError):
    code = "Code.NotFound"


class ConflictError(NimbusError):
    code = "Resource.Conflict"
    status = 409


class PayloadTooLargeError(NimbusError):
    code = "Request.PayloadTooLarge"
    status = 413


class ThrottledError(NimbusError):
    code = "Invocation.Throttled"
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class UnavailableError(NimbusError):
    code = "Platform.Unavailable"
    status = 503


#: Every concrete error class, for docs and tests that check codes are unique.
ALL_ERRORS: tuple[type[NimbusError], ...] = (
    ValidationError,
    InvalidNameError,
    InvalidSettingError,
    InvalidJSONError,
    UnsupportedMediaError,
    InvalidPackageError,
    HandlerMissingError,
    UnknownRuntimeError,
    AuthError,
    ForbiddenError,
    NotFoundError,
    FunctionNotFoundError,
    CodeNotFoundError,
    ConflictError,
    PayloadTooLargeError,
    ThrottledError,
    UnavailableError,
)
