"""Route an invocation to the pool of the function's current revision, within the
namespace's request rate quota."""

from __future__ import annotations

from nimbus.dispatch.directory import FunctionDirectory
from nimbus.dispatch.ratelimit import RateLimiter
from nimbus.domain.invocation import InvocationResult
from nimbus.pool.instance import InitFailed
from nimbus.pool.manager import PoolManager
from nimbus.pool.pool import PoolRetired, new_request_id

LATEST = "$LATEST"


class Dispatcher:
    def __init__(
        self, directory: FunctionDirectory, pools: PoolManager, rates: RateLimiter | None = None
    ) -> None:
        self._directory = directory
        self._pools = pools
        self._rates = rates or RateLimiter()

    async def invoke(
        self, namespace: str, name: str, payload: bytes, *, want_tail: bool = False
    ) -> InvocationResult:
        """Run one call synchronously. Function failures come back in the result;
        platform refusals (not found, throttled) are raised as NimbusError."""
        request_id = new_request_id()
        config = await self._directory.get(namespace, name)
        self._rates.admit(namespace)  # a call to a missing function spends no token
        while True:
            pool = self._pools.pool_for(config)
            try:
                async with pool.lease() as instance:
                    cold = instance.served == 0
                    outcome = await instance.call(request_id, payload, want_tail)
            except PoolRetired:
                # The function changed while this call queued: use its current pool.
                config = await self._directory.get(namespace, name)
                continue
            except InitFailed as exc:
                return InvocationResult(
                    request_id=request_id,
                    function_name=name,
                    version=LATEST,
                    payload=None,
                    error=exc.error,
                    cold_start=True,
                    duration_ms=0.0,
                    init_duration_ms=exc.init_duration_ms,
                    log_tail=exc.log_tail if want_tail else None,
                )
            break
        return InvocationResult(
            request_id=request_id,
            function_name=name,
            version=LATEST,
            payload=outcome.payload,
            error=outcome.error,
            cold_start=cold,
            duration_ms=outcome.duration_ms,
            init_duration_ms=instance.init_duration_ms if cold else None,
            log_tail=outcome.log_tail,
        )
