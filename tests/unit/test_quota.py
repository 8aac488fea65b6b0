"""Quota and access decisions, pure: token bucket, quota checks, roles, namespace budget."""

from __future__ import annotations

import pytest

from nimbus.config import Settings
from nimbus.dispatch.ratelimit import RateLimiter
from nimbus.domain.access import Permission, allows, place, require
from nimbus.domain.keys import ApiKey, Role
from nimbus.domain.namespace import NamespaceUsage, Quotas, validate_quotas
from nimbus.domain.quota import (
    TokenBucket,
    burst_of,
    check_function_change,
    retry_after_s,
    take_token,
)
from nimbus.errors import (
    CodeSizeQuotaError,
    ForbiddenError,
    FunctionsQuotaError,
    InvalidSettingError,
    RateQuotaError,
)
from nimbus.pool.budget import NamespaceBudget
from nimbus.pool.policy import instances_to_reclaim, instances_to_start

# ---- token bucket ------------------------------------------------------------------


def test_bucket_allows_a_burst_of_twice_the_rate_then_refuses() -> None:
    bucket = TokenBucket.full(5.0, now=100.0)
    assert bucket.tokens == 10.0
    for _ in range(10):
        bucket, wait_s = take_token(bucket, rate_per_s=5.0, now=100.0)
        assert wait_s == 0.0
    bucket, wait_s = take_token(bucket, rate_per_s=5.0, now=100.0)
    assert wait_s == pytest.approx(0.2)  # one token at 5/s


def test_bucket_refills_with_time_up_to_the_burst() -> None:
    bucket = TokenBucket(0.0, at=0.0)
    bucket, wait_s = take_token(bucket, rate_per_s=2.0, now=0.25)
    assert wait_s == pytest.approx(0.25)  # 0.5 token there, 0.5 missing at 2/s
    bucket, wait_s = take_token(bucket, rate_per_s=2.0, now=0.5)
    assert wait_s == 0.0 and bucket.tokens == pytest.approx(0.0)
    bucket, _ = take_token(bucket, rate_per_s=2.0, now=1000.0)  # long idle: capped at burst
    assert bucket.tokens == pytest.approx(burst_of(2.0) - 1)


def test_refusal_takes_nothing_and_time_never_runs_backwards() -> None:
    bucket = TokenBucket(0.5, at=10.0)
    after, wait_s = take_token(bucket, rate_per_s=1.0, now=9.0)  # a clock step back
    assert wait_s == pytest.approx(0.5) and after.tokens == pytest.approx(0.5)


def test_slow_rates_still_allow_one_call() -> None:
    assert burst_of(0.1) == 1.0
    bucket, wait_s = take_token(TokenBucket.full(0.1, 0.0), rate_per_s=0.1, now=0.0)
    assert wait_s == 0.0
    _, wait_s = take_token(bucket, rate_per_s=0.1, now=1.0)
    assert wait_s == pytest.approx(9.0)
    assert retry_after_s(wait_s) == 9
    assert retry_after_s(0.01) == 1


def test_rate_limiter_per_namespace_with_a_fake_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limiter.set_rate("a", 1.0)
    limiter.admit("a")
    limiter.admit("a")
    with pytest.raises(RateQuotaError) as caught:
        limiter.admit("a")
    assert caught.value.retry_after_s == 1 and caught.value.code == "Quota.RateExceeded"
    assert "max_requests_per_s=1" in caught.value.message
    for _ in range(100):
        limiter.admit("b")  # no limit
    now[0] = 1.0
    limiter.admit("a")
    limiter.set_rate("a", None)
    limiter.admit("a")


# ---- quota checks ------------------------------------------------------------------


def test_function_count_quota_applies_to_creation_only() -> None:
    quotas = Quotas(max_functions=2)
    full = NamespaceUsage(functions=2, code_bytes=0, instances=0)
    with pytest.raises(FunctionsQuotaError, match="max_functions=2"):
        check_function_change("ns", quotas, full, creating=True, old_code_bytes=0, new_code_bytes=1)
    check_function_change("ns", quotas, full, creating=False, old_code_bytes=1, new_code_bytes=1)
    check_function_change("ns", Quotas(), full, creating=True, old_code_bytes=0, new_code_bytes=1)


def test_code_size_quota_counts_the_namespace_after_the_change() -> None:
    quotas = Quotas(max_code_bytes=1000)
    usage = NamespaceUsage(functions=2, code_bytes=900, instances=0)
    check_function_change(
        "ns", quotas, usage, creating=False, old_code_bytes=400, new_code_bytes=500
    )
    with pytest.raises(CodeSizeQuotaError, match="max_code_bytes=1000") as caught:
        check_function_change(
            "ns", quotas, usage, creating=True, old_code_bytes=0, new_code_bytes=101
        )
    assert caught.value.details["after"] == 1001
    # Already over (the quota was lowered): shrinking or keeping the size is still allowed.
    over = NamespaceUsage(functions=1, code_bytes=5000, instances=0)
    check_function_change(
        "ns", quotas, over, creating=False, old_code_bytes=5000, new_code_bytes=5000
    )


def test_quotas_must_be_positive_or_unlimited() -> None:
    validate_quotas(Quotas(max_functions=None, max_requests_per_s=0.5))
    with pytest.raises(InvalidSettingError, match="max_functions"):
        validate_quotas(Quotas(max_functions=0))


def test_default_quotas_come_from_settings() -> None:
    settings = Settings.from_mapping(
        {
            "NIMBUS_DEFAULT_QUOTA_MAX_FUNCTIONS": "20",
            "NIMBUS_DEFAULT_QUOTA_MAX_REQUESTS_PER_S": "2.5",
            "NIMBUS_DEFAULT_QUOTA_MAX_CODE_BYTES": "unlimited",
        }
    )
    assert settings.default_quota_max_functions == 20
    assert settings.default_quota_max_requests_per_s == 2.5
    assert settings.default_quota_max_code_bytes is None
    with pytest.raises(InvalidSettingError):
        Settings.from_mapping({"NIMBUS_DEFAULT_QUOTA_MAX_FUNCTIONS": "0"})
    assert "secret_key" not in repr(Settings(secret_key="x" * 44))


# ---- roles and namespaces ------------------------------------------------------------


def _key(role: Role, namespace: str = "team") -> ApiKey:
    return ApiKey("k1", namespace, role, "test")


def test_admin_acts_where_asked_others_only_at_home() -> None:
    assert place(_key(Role.ADMIN, "default"), None).namespace == "default"
    assert place(_key(Role.ADMIN, "default"), "team").namespace == "team"
    assert place(_key(Role.DEVELOPER), None).namespace == "team"
    assert place(_key(Role.DEVELOPER), "team").visible
    foreign = place(_key(Role.DEVELOPER), "other")
    assert foreign.namespace == "other" and not foreign.visible
    assert not place(_key(Role.INVOKER), "other").visible


def test_role_permissions() -> None:
    assert all(allows(Role.ADMIN, p) for p in Permission)
    assert allows(Role.DEVELOPER, Permission.MANAGE) and allows(Role.DEVELOPER, Permission.KEYS)
    assert not allows(Role.DEVELOPER, Permission.ADMIN)
    assert allows(Role.INVOKER, Permission.INVOKE)
    assert not any(allows(Role.INVOKER, p) for p in Permission if p is not Permission.INVOKE)
    with pytest.raises(ForbiddenError, match="may only invoke"):
        require(_key(Role.INVOKER), Permission.MANAGE)
    require(_key(Role.DEVELOPER), Permission.READ)


# ---- namespace instance budget --------------------------------------------------------


def test_scale_decision_respects_namespace_headroom() -> None:
    kw = {"waiting": 5, "starting": 0, "total": 0, "max_instances": 10}
    assert instances_to_start(**kw) == 5
    assert instances_to_start(**kw, namespace_headroom=None) == 5
    assert instances_to_start(**kw, namespace_headroom=2) == 2
    assert instances_to_start(**kw, namespace_headroom=0) == 0


def test_reclaim_only_what_the_functions_own_cap_would_allow() -> None:
    assert instances_to_reclaim(waiting=3, starting=0, total=0, max_instances=10, stopping=0) == 3
    assert instances_to_reclaim(waiting=3, starting=0, total=9, max_instances=10, stopping=0) == 1
    assert instances_to_reclaim(waiting=3, starting=0, total=0, max_instances=10, stopping=2) == 1
    assert instances_to_reclaim(waiting=1, starting=1, total=1, max_instances=10, stopping=0) == 0


class FakePool:
    def __init__(self, live: int = 0, idle: list[tuple[float, str]] | None = None) -> None:
        self.live = live
        self.idle = idle or []
        self.evicted: list[str] = []
        self.rescaled = 0

    def occupied(self) -> int:
        return self.live

    def stopping(self) -> int:
        return len(self.evicted)

    def idle_since(self) -> list[tuple[float, str]]:
        return [i for i in self.idle if i[1] not in self.evicted]

    def evict(self, instance_id: str) -> bool:
        self.evicted.append(instance_id)
        return True

    def rescale(self) -> None:
        self.rescaled += 1


def test_budget_counts_every_pool_of_the_namespace() -> None:
    budget = NamespaceBudget("ns", limit=3)
    a, b = FakePool(live=1), FakePool(live=1)
    budget.join(a)
    budget.join(b)
    assert budget.used() == 2 and budget.headroom() == 1 and not budget.exhausted()
    b.live = 2
    assert budget.headroom() == 0 and budget.exhausted()
    assert NamespaceBudget("free").headroom() is None


def test_budget_reclaims_the_longest_idle_of_other_pools() -> None:
    budget = NamespaceBudget("ns", limit=2)
    me = FakePool(live=0, idle=[(1.0, "mine")])
    a = FakePool(live=1, idle=[(5.0, "a-new")])
    b = FakePool(live=1, idle=[(2.0, "b-old")])
    for pool in (me, a, b):
        budget.join(pool)
    assert budget.reclaim(me, 1) == 1
    assert b.evicted == ["b-old"] and a.evicted == [] and me.evicted == []


def test_budget_wakes_other_pools_only_when_limited() -> None:
    a, b = FakePool(), FakePool()
    unlimited = NamespaceBudget("ns")
    unlimited.join(a)
    unlimited.wake()
    assert a.rescaled == 0
    limited = NamespaceBudget("ns", limit=1)
    limited.join(a)
    limited.join(b)
    limited.wake(exclude=a)
    assert (a.rescaled, b.rescaled) == (0, 1)
    limited.set_limit(2)  # a raised limit lets everyone try again
    assert (a.rescaled, b.rescaled) == (1, 2)
