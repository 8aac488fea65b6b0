"""Quota decisions, pure: usage and limits in, a verdict out; time is passed in.

The errors say which quota, its value, and what to do about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nimbus.domain.namespace import NamespaceUsage, Quotas
from nimbus.errors import CodeSizeQuotaError, FunctionsQuotaError

_RAISE_IT = "ask an admin to raise it (`nimbus namespace update {ns} --{flag} N`)"


def check_function_change(
    namespace: str,
    quotas: Quotas,
    usage: NamespaceUsage,
    *,
    creating: bool,
    old_code_bytes: int,
    new_code_bytes: int,
) -> None:
    """Refuse a create or update that would take the namespace over a quota."""
    if creating and quotas.max_functions is not None and usage.functions >= quotas.max_functions:
        raise FunctionsQuotaError(
            f"namespace {namespace!r} has reached its quota max_functions="
            f"{quotas.max_functions}; delete a function first, or "
            + _RAISE_IT.format(ns=namespace, flag="max-functions"),
            quota="max_functions",
            limit=quotas.max_functions,
        )
    after = usage.code_bytes - old_code_bytes + new_code_bytes
    if (
        quotas.max_code_bytes is not None
        and after > quotas.max_code_bytes
        and new_code_bytes > old_code_bytes
    ):
        raise CodeSizeQuotaError(
            f"namespace {namespace!r} would hold {after} bytes of code, over its quota "
            f"max_code_bytes={quotas.max_code_bytes}; use a smaller package, delete a "
            "function, or " + _RAISE_IT.format(ns=namespace, flag="max-code-bytes"),
            quota="max_code_bytes",
            limit=quotas.max_code_bytes,
            after=after,
        )


@dataclass(frozen=True)
class TokenBucket:
    """A token bucket's state: ``tokens`` available as of ``at`` (monotonic seconds)."""

    tokens: float
    at: float

    @classmethod
    def full(cls, rate_per_s: float, now: float) -> TokenBucket:
        return cls(burst_of(rate_per_s), now)


def burst_of(rate_per_s: float) -> float:
    """Calls that may arrive at once after a quiet spell: twice the rate, at least one."""
    return max(1.0, 2.0 * rate_per_s)


def take_token(bucket: TokenBucket, *, rate_per_s: float, now: float) -> tuple[TokenBucket, float]:
    """Refill by the time elapsed, then take one token.

    Returns the new state and ``0.0`` when the call may go, or the unchanged
    state (refilled) and the seconds until a token is available when it may not.
    """
    burst = burst_of(rate_per_s)
    elapsed = max(0.0, now - bucket.at)
    tokens = min(burst, bucket.tokens + elapsed * rate_per_s)
    if tokens >= 1.0:
        return TokenBucket(tokens - 1.0, now), 0.0
    return TokenBucket(tokens, now), (1.0 - tokens) / rate_per_s


def retry_after_s(wait_s: float) -> int:
    """A Retry-After header value: whole seconds, at least one."""
    return max(1, math.ceil(wait_s))
