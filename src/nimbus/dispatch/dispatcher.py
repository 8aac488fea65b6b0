"""Route an invocation to the pool of the version it names (``$LATEST``, a number, or an
alias, whose weights pick one), within the namespace's request rate quota and the
function's reserved concurrency."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from nimbus.dispatch.directory import FunctionDirectory
from nimbus.dispatch.ratelimit import RateLimiter
from nimbus.domain.function import FunctionConfig, service_not_invocable
from nimbus.domain.invocation import InvocationResult
from nimbus.domain.version import Qualifier
from nimbus.errors import ReservedConcurrencyError, ThrottledError, UnavailableError
from nimbus.metrics import Metrics
from nimbus.pool.instance import CallOutcome, InitFailed, Instance
from nimbus.pool.manager import PoolManager
from nimbus.pool.pool import PoolRetired, new_request_id

LATEST_QUALIFIER = Qualifier(latest=True)
#: Runs one HTTP service request on a leased instance (the gateway's relay), given the
#: instance, the request id and the configuration it runs.
Serve = Callable[[Instance, str, FunctionConfig], Awaitable[CallOutcome]]


class Dispatcher:
    def __init__(
        self,
        directory: FunctionDirectory,
        pools: PoolManager,
        rates: RateLimiter | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._directory = directory
        self._pools = pools
        self._rates = rates or RateLimiter()
        self._metrics = metrics or Metrics()

    async def invoke(
        self,
        namespace: str,
        name: str,
        payload: bytes,
        *,
        want_tail: bool = False,
        qualifier: Qualifier = LATEST_QUALIFIER,
        request_id: str | None = None,
        serve: Serve | None = None,
    ) -> InvocationResult:
        """Run one call synchronously. Function failures come back in the result;
        platform refusals (not found, throttled) are raised as NimbusError.
        ``request_id``: an asynchronous event's id, the same on every attempt.
        ``serve``: for an HTTP service, what runs on the leased instance instead of
        handing it ``payload`` (only services take it; events are refused them)."""
        try:
            result, memory_mb = await self._invoke(
                namespace, name, payload, want_tail, qualifier, request_id, serve
            )
        except ThrottledError as exc:
            self._metrics.throttled(namespace, name, exc.code)
            raise
        self._metrics.invoked(
            namespace,
            name,
            result.version,
            ok=result.error is None,
            cold=result.cold_start,
            duration_ms=result.duration_ms,
            billed_ms=result.billed_duration_ms,
            memory_mb=memory_mb,
        )
        return result

    async def _invoke(
        self,
        namespace: str,
        name: str,
        payload: bytes,
        want_tail: bool,
        qualifier: Qualifier,
        request_id: str | None,
        serve: Serve | None,
    ) -> tuple[InvocationResult, int]:
        request_id = request_id or new_request_id()
        head, config = await self._directory.resolve(namespace, name, qualifier)
        if config.is_service != (serve is not None):
            if serve is None:
                raise service_not_invocable(config)
            raise UnavailableError(
                f"function {name!r} stopped being an HTTP service as this request arrived; retry it"
            )
        self._rates.admit(namespace)  # a call to a missing function spends no token
        reserved = head.reserved_concurrency
        self._pools.set_function_limit(namespace, name, reserved)
        if reserved == 0:
            raise ReservedConcurrencyError(
                f"function {name!r} has a reserved concurrency of 0: it is disabled; "
                f"enable it with `nimbus concurrency set {name} N` or "
                f"`nimbus concurrency delete {name}`",
                retry_after_s=60,
                limit=0,
            )
        while True:
            pool = self._pools.pool_for(config)
            asked = time.monotonic()
            try:
                async with pool.lease() as instance:
                    # Cold: the call waited for this instance's init. A pre-warmed or
                    # provisioned instance's first call is warm.
                    cold = instance.served == 0 and instance.ready_at >= asked
                    if serve is None:
                        outcome = await instance.call(request_id, payload, want_tail)
                    else:
                        outcome = await serve(instance, request_id, config)
            except PoolRetired:
                # The function changed while this call queued: use its current pool
                # (an alias is resolved again: it may have moved).
                head, config = await self._directory.resolve(namespace, name, qualifier)
                continue
            except InitFailed as exc:
                failed = InvocationResult(
                    request_id=request_id,
                    function_name=name,
                    version=config.version,
                    payload=None,
                    error=exc.error,
                    cold_start=True,
                    duration_ms=0.0,
                    init_duration_ms=exc.init_duration_ms,
                    log_tail=exc.log_tail if want_tail else None,
                )
                return failed, config.memory_mb
            break
        result = InvocationResult(
            request_id=request_id,
            function_name=name,
            version=config.version,
            payload=outcome.payload,
            error=outcome.error,
            cold_start=cold,
            duration_ms=outcome.duration_ms,
            init_duration_ms=instance.init_duration_ms if cold else None,
            log_tail=outcome.log_tail,
        )
        return result, config.memory_mb
