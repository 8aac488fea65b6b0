"""The Nimbus exception tree and its stable error codes.

Every error a user can cause is a :class:`NimbusError` subclass carrying a
stable ``code`` (``Family.Reason``), an HTTP ``status`` and a message that says
what to do. The gateway turns them into ``{"error": {"code", "message"}}``.

    NimbusError
    ├── ValidationError             400  Request.Invalid
    │   ├── InvalidNameError        400  Function.InvalidName
    │   │   └── InvalidNamespaceNameError 400  Namespace.InvalidName
    │   ├── InvalidSettingError     400  Function.InvalidSetting
    │   │   ├── InvalidQualifierError 400  Function.InvalidQualifier
    │   │   └── InvalidTriggerError   400  Trigger.Invalid
    │   ├── InvalidJSONError        400  Request.InvalidJSON
    │   ├── UnsupportedMediaError   415  Request.UnsupportedMediaType
    │   ├── InvalidPackageError     400  Code.InvalidPackage
    │   ├── HandlerMissingError     400  Code.HandlerNotFound
    │   ├── UnknownRuntimeError     400  Function.UnknownRuntime
    │   └── ServiceNotInvocableError 400  Function.IsHttpService
    ├── AuthError                   401  Auth.Unauthorized
    ├── ForbiddenError              403  Auth.Forbidden
    ├── NotFoundError               404  Resource.NotFound
    │   ├── FunctionNotFoundError   404  Function.NotFound
    │   ├── CodeNotFoundError       404  Code.NotFound
    │   ├── NamespaceNotFoundError  404  Namespace.NotFound
    │   ├── KeyNotFoundError        404  Key.NotFound
    │   ├── VersionNotFoundError    404  Function.VersionNotFound
    │   ├── InvocationNotFoundError 404  Invocation.NotFound
    │   ├── TriggerNotFoundError    404  Trigger.NotFound
    │   └── AliasNotFoundError      404  Function.AliasNotFound
    ├── ConflictError               409  Resource.Conflict
    │   ├── NamespaceExistsError    409  Namespace.AlreadyExists
    │   ├── NamespaceNotEmptyError  409  Namespace.NotEmpty
    │   ├── NamespaceProtectedError 409  Namespace.Protected
    │   ├── LastAdminKeyError       409  Key.LastAdmin
    │   ├── FunctionsQuotaError     409  Quota.FunctionsExceeded
    │   ├── CodeSizeQuotaError      409  Quota.CodeSizeExceeded
    │   ├── TriggerExistsError      409  Trigger.AlreadyExists
    │   └── VersionInUseError       409  Function.VersionInUse
    ├── PayloadTooLargeError        413  Request.PayloadTooLarge
    ├── ThrottledError              429  Invocation.Throttled
    │   ├── ReservedConcurrencyError 429  Function.ReservedConcurrencyExceeded
    │   ├── ConcurrencyQuotaError   429  Quota.ConcurrencyExceeded
    │   └── RateQuotaError          429  Quota.RateExceeded
    └── UnavailableError            503  Platform.Unavailable

Calls in a namespace a key may not see answer as if it did not exist
(``Function.NotFound``, ``Namespace.NotFound``), never 403: 403 only says the
key's role does not allow the action in its own namespace.

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


class InvalidNamespaceNameError(InvalidNameError):
    code = "Namespace.InvalidName"


class InvalidSettingError(ValidationError):
    code = "Function.InvalidSetting"


class InvalidQualifierError(InvalidSettingError):
    code = "Function.InvalidQualifier"


class InvalidTriggerError(InvalidSettingError):
    """A trigger's schedule, time zone, catch-up policy or settings are not accepted."""

    code = "Trigger.Invalid"


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


class ServiceNotInvocableError(ValidationError):
    """The function is an HTTP service (handler ``module:app``): it answers at its URL,
    not to invocations with an event."""

    code = "Function.IsHttpService"


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


class NamespaceNotFoundError(NotFoundError):
    code = "Namespace.NotFound"


class KeyNotFoundError(NotFoundError):
    code = "Key.NotFound"


class VersionNotFoundError(NotFoundError):
    code = "Function.VersionNotFound"


class AliasNotFoundError(NotFoundError):
    code = "Function.AliasNotFound"


class InvocationNotFoundError(NotFoundError):
    code = "Invocation.NotFound"


class TriggerNotFoundError(NotFoundError):
    code = "Trigger.NotFound"


class ConflictError(NimbusError):
    code = "Resource.Conflict"
    status = 409


class NamespaceExistsError(ConflictError):
    code = "Namespace.AlreadyExists"


class NamespaceNotEmptyError(ConflictError):
    code = "Namespace.NotEmpty"


class NamespaceProtectedError(ConflictError):
    code = "Namespace.Protected"


class LastAdminKeyError(ConflictError):
    code = "Key.LastAdmin"


class FunctionsQuotaError(ConflictError):
    """Creating one more function would exceed the namespace's ``max_functions``."""

    code = "Quota.FunctionsExceeded"


class CodeSizeQuotaError(ConflictError):
    """The namespace's functions would hold more code than its ``max_code_bytes``."""

    code = "Quota.CodeSizeExceeded"


class TriggerExistsError(ConflictError):
    code = "Trigger.AlreadyExists"


class VersionInUseError(ConflictError):
    """An alias (or provisioned instances) still point at the version."""

    code = "Function.VersionInUse"


class PayloadTooLargeError(NimbusError):
    code = "Request.PayloadTooLarge"
    status = 413


class ThrottledError(NimbusError):
    code = "Invocation.Throttled"
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class ConcurrencyQuotaError(ThrottledError):
    """The namespace runs ``max_concurrent_instances`` instances and none became free in time."""

    code = "Quota.ConcurrencyExceeded"


class ReservedConcurrencyError(ThrottledError):
    """The function runs its reserved concurrency (0: disabled) and none became free."""

    code = "Function.ReservedConcurrencyExceeded"


class RateQuotaError(ThrottledError):
    """The namespace's ``max_requests_per_s`` token bucket is empty."""

    code = "Quota.RateExceeded"


class UnavailableError(NimbusError):
    code = "Platform.Unavailable"
    status = 503


#: Every concrete error class, for docs and tests that check codes are unique.
ALL_ERRORS: tuple[type[NimbusError], ...] = (
    ValidationError,
    InvalidNameError,
    InvalidNamespaceNameError,
    InvalidSettingError,
    InvalidQualifierError,
    InvalidTriggerError,
    InvalidJSONError,
    UnsupportedMediaError,
    InvalidPackageError,
    HandlerMissingError,
    UnknownRuntimeError,
    ServiceNotInvocableError,
    AuthError,
    ForbiddenError,
    NotFoundError,
    FunctionNotFoundError,
    CodeNotFoundError,
    NamespaceNotFoundError,
    KeyNotFoundError,
    VersionNotFoundError,
    AliasNotFoundError,
    InvocationNotFoundError,
    TriggerNotFoundError,
    ConflictError,
    NamespaceExistsError,
    NamespaceNotEmptyError,
    NamespaceProtectedError,
    LastAdminKeyError,
    FunctionsQuotaError,
    CodeSizeQuotaError,
    TriggerExistsError,
    VersionInUseError,
    PayloadTooLargeError,
    ThrottledError,
    ConcurrencyQuotaError,
    ReservedConcurrencyError,
    RateQuotaError,
    UnavailableError,
)
