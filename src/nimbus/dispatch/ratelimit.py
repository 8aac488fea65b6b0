"""Per-namespace request rate quota (``max_requests_per_s``) on the invoke path.

One token bucket per namespace with a limit, refilled at the rate, holding at
most twice the rate (the burst). The decision is the pure
:func:`nimbus.domain.quota.take_token`; this is its in-memory state (per node).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nimbus.domain.quota import TokenBucket, retry_after_s, take_token
from nimbus.errors import RateQuotaError


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rates: dict[str, float] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def set_rate(self, namespace: str, rate_per_s: float | None) -> None:
        """Set or clear (None) the namespace's limit; a new limit starts with a full bucket."""
        if rate_per_s is None:
            self._rates.pop(namespace, None)
            self._buckets.pop(namespace, None)
            return
        if self._rates.get(namespace) != rate_per_s:
            self._rates[namespace] = rate_per_s
            self._buckets[namespace] = TokenBucket.full(rate_per_s, self._clock())

    def admit(self, namespace: str) -> None:
        """Take a token, or raise 429 ``Quota.RateExceeded`` with the time to wait."""
        rate = self._rates.get(namespace)
        if rate is None:
            return
        now = self._clock()
        bucket = self._buckets.get(namespace) or TokenBucket.full(rate, now)
        bucket, wait_s = take_token(bucket, rate_per_s=rate, now=now)
        self._buckets[namespace] = bucket
        if wait_s > 0:
            raise RateQuotaError(
                f"namespace {namespace!r} is over its quota max_requests_per_s={rate:g} "
                f"(bursts up to {max(1.0, 2 * rate):g}); retry in {wait_s:.2f} s, spread the "
                "calls out, or ask an admin to raise the quota (`nimbus namespace update "
                f"{namespace} --max-requests-per-s N`)",
                retry_after_s=retry_after_s(wait_s),
                quota="max_requests_per_s",
                limit=rate,
            )
