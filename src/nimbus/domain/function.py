"""Functions: their configuration, and the rules a valid one follows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from nimbus.errors import (
    FunctionNotFoundError,
    InvalidNameError,
    InvalidSettingError,
    ServiceNotInvocableError,
)

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MEMORY_MB_RANGE = (64, 10240)
TIMEOUT_S_RANGE = (1, 900)
MAX_INSTANCES_RANGE = (1, 1000)
MAX_ENV_BYTES = 4 * 1024
MAX_DESCRIPTION_CHARS = 256
#: Environment variables the platform sets itself; a function may not override them.
RESERVED_ENV_PREFIXES = ("AWS_LAMBDA_", "NIMBUS_", "LAMBDA_", "SCF_", "_HANDLER")
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_S = 3
#: ``none``: the instance reaches only its Runtime API. ``egress``: also outside networks
#: (never the host, the platform or other instances).
NETWORK_MODES = ("none", "egress")
DEFAULT_NETWORK = "none"
#: Asynchronous invocations: attempts (1 + retries) and how old an event may get.
ASYNC_MAX_ATTEMPTS_RANGE = (1, 3)
ASYNC_MAX_AGE_S_RANGE = (60, 21600)
DEFAULT_ASYNC_MAX_ATTEMPTS = 3
DEFAULT_ASYNC_MAX_AGE_S = 21600


@dataclass(frozen=True)
class FunctionConfig:
    """What a user sets on a function. ``revision`` bumps on every change."""

    namespace: str
    name: str
    runtime: str
    handler: str
    code_sha256: str
    code_size: int
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_s: int = DEFAULT_TIMEOUT_S
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    max_instances: int | None = None
    #: Set in instances like ``env``; encrypted at rest and never shown by the API.
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    network: str = DEFAULT_NETWORK
    #: Per-function cap on concurrent instances across all its versions (0: disabled);
    #: not part of a version's snapshot, like Lambda's reserved concurrency.
    reserved_concurrency: int | None = None
    #: Asynchronous invocation settings (see docs/async.md): attempts per event, the
    #: oldest an event may get, and the functions that receive a record of each success
    #: or final failure (None: a failure goes to the dead letters).
    async_max_attempts: int = DEFAULT_ASYNC_MAX_ATTEMPTS
    async_max_age_s: int = DEFAULT_ASYNC_MAX_AGE_S
    on_success: str | None = None
    on_failure: str | None = None
    revision: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: ``$LATEST`` for the editable head, else the published version's number.
    version: str = "$LATEST"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def is_service(self) -> bool:
        """An HTTP service (handler ``module:app``, gunicorn's and uvicorn's form: an
        unmodified WSGI or ASGI app): served at its URL, not invoked with events."""
        return ":" in self.handler

    @property
    def version_key(self) -> tuple[str, str, int]:
        """Identifies one immutable configuration: pools are keyed by it."""
        return (self.namespace, self.name, self.revision)

    @property
    def pool_key(self) -> tuple[str, str, str]:
        """One pool per runnable version: ``$LATEST`` (replaced on change) or a number."""
        return (self.namespace, self.name, self.version)


def validate_name(
    name: str, what: str = "function name", error: type[InvalidNameError] = InvalidNameError
) -> str:
    if not NAME_RE.match(name):
        raise error(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter"
        )
    return name


def function_not_found(name: str) -> FunctionNotFoundError:
    """The one answer for a function the caller cannot see, whether or not it exists
    elsewhere: every route uses it, so the body reveals nothing."""
    return FunctionNotFoundError(
        f"function {name!r} does not exist; check the name with `nimbus list` "
        "or create it with `nimbus deploy`"
    )


def service_not_invocable(config: FunctionConfig) -> ServiceNotInvocableError:
    """The answer to an invocation of an HTTP service: where to send requests instead."""
    return ServiceNotInvocableError(
        f"function {config.name!r} is an HTTP service (handler {config.handler!r}): it "
        f"answers HTTP requests at its URL, /fn/{config.namespace}/{config.name}/, not "
        f"invocations; give it a URL with `nimbus trigger add-url {config.name} web` "
        "and send requests there"
    )


def validate_settings(
    *,
    memory_mb: int,
    timeout_s: int,
    env: dict[str, str],
    description: str,
    max_instances: int | None,
    secret_env: dict[str, str] | None = None,
    network: str = DEFAULT_NETWORK,
    async_max_attempts: int = DEFAULT_ASYNC_MAX_ATTEMPTS,
    async_max_age_s: int = DEFAULT_ASYNC_MAX_AGE_S,
    on_success: str | None = None,
    on_failure: str | None = None,
) -> None:
    """Raise :class:`InvalidSettingError` naming the first setting out of range."""
    lo, hi = MEMORY_MB_RANGE
    if not lo <= memory_mb <= hi:
        raise InvalidSettingError(f"memory_mb must be between {lo} and {hi}, got {memory_mb}")
    lo, hi = TIMEOUT_S_RANGE
    if not lo <= timeout_s <= hi:
        raise InvalidSettingError(f"timeout_s must be between {lo} and {hi}, got {timeout_s}")
    if max_instances is not None:
        lo, hi = MAX_INSTANCES_RANGE
        if not lo <= max_instances <= hi:
            raise InvalidSettingError(
                f"max_instances must be between {lo} and {hi}, got {max_instances}"
            )
    lo, hi = ASYNC_MAX_ATTEMPTS_RANGE
    if not lo <= async_max_attempts <= hi:
        raise InvalidSettingError(
            f"async_max_attempts must be between {lo} and {hi}, got {async_max_attempts}"
        )
    lo, hi = ASYNC_MAX_AGE_S_RANGE
    if not lo <= async_max_age_s <= hi:
        raise InvalidSettingError(
            f"async_max_age_s must be between {lo} and {hi}, got {async_max_age_s}"
        )
    for field_name, target in (("on_success", on_success), ("on_failure", on_failure)):
        if target is not None and not NAME_RE.match(target):
            raise InvalidSettingError(
                f"{field_name} must name a function of the same namespace, got {target!r}"
            )
    if network not in NETWORK_MODES:
        raise InvalidSettingError(
            f"network must be one of {', '.join(NETWORK_MODES)}, got {network!r}"
        )
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidSettingError(f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
    secret_env = secret_env or {}
    both = sorted(set(env) & set(secret_env))
    if both:
        raise InvalidSettingError(
            f"{', '.join(both)} set both in env and in secret_env; keep each name in one of them"
        )
    for values, field_name, what in (
        (env, "env", "environment variable"),
        (secret_env, "secret_env", "secret variable"),
    ):
        size = _check_env(values, what)
        if size > MAX_ENV_BYTES:
            raise InvalidSettingError(
                f"{what}s ({field_name}) take {size} bytes; the limit is {MAX_ENV_BYTES}"
            )


def _check_env(env: dict[str, str], what: str) -> int:
    """Check names and values; return their size in bytes."""
    size = 0
    for key, value in env.items():
        if not ENV_KEY_RE.match(key):
            raise InvalidSettingError(
                f"{what} name {key!r} is invalid: use letters, digits and '_', "
                "not starting with a digit"
            )
        if key.startswith(RESERVED_ENV_PREFIXES):
            raise InvalidSettingError(
                f"{what} {key!r} is reserved by the platform; choose another name"
            )
        if "\x00" in value:
            raise InvalidSettingError(f"{what} {key!r} contains a NUL byte")
        size += len(key.encode()) + len(value.encode())
    return size
