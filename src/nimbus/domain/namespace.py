"""Namespaces (tenants): each owns functions and keys, and has quotas."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nimbus.domain.function import validate_name
from nimbus.errors import InvalidNamespaceNameError, InvalidSettingError, NamespaceNotFoundError

#: Always exists; cannot be deleted. Keys and calls without a namespace act here.
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Quotas:
    """Limits of one namespace; ``None`` means unlimited."""

    #: Functions the namespace may hold.
    max_functions: int | None = None
    #: Sum of the code package sizes of its functions, in bytes.
    max_code_bytes: int | None = None
    #: Instances of all its functions running at once (starting ones count).
    max_concurrent_instances: int | None = None
    #: Invocations per second, as a token bucket with a burst of twice the rate.
    max_requests_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Quotas:
        return dataclasses.replace(self, **changes)


QUOTA_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Quotas))


@dataclass(frozen=True)
class Namespace:
    name: str
    quotas: Quotas = Quotas()
    created_at: datetime | None = None


@dataclass(frozen=True)
class NamespaceUsage:
    """What a namespace uses now, to compare with its quotas."""

    functions: int
    code_bytes: int
    instances: int


def validate_namespace_name(name: str) -> str:
    return validate_name(name, "namespace name", InvalidNamespaceNameError)


def validate_quotas(quotas: Quotas) -> Quotas:
    """Refuse a zero or negative limit (``None`` is the way to say unlimited)."""
    for name in QUOTA_NAMES:
        value = getattr(quotas, name)
        if value is not None and value <= 0:
            raise InvalidSettingError(
                f"quota {name} must be positive, or null for no limit; got {value}"
            )
    return quotas


def namespace_not_found(name: str) -> NamespaceNotFoundError:
    """The one answer for a namespace the caller cannot see, whether or not it exists."""
    return NamespaceNotFoundError(
        f"namespace {name!r} does not exist or this key cannot use it; a key acts in its own "
        "namespace (admin keys choose one with X-Nimbus-Namespace or ?namespace=)"
    )
