"""Use cases on namespaces (tenants): create, change quotas, delete, report usage.

Namespaces are few and read on every request, so they are kept in memory
(this process owns the store); every change also pushes the namespace's
runtime quotas to the pools (concurrent instances) and the rate limiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from nimbus.config import Settings
from nimbus.dispatch.ratelimit import RateLimiter
from nimbus.domain.audit import Actor, AuditAction, AuditEntry
from nimbus.domain.namespace import (
    DEFAULT_NAMESPACE,
    QUOTA_NAMES,
    Namespace,
    NamespaceUsage,
    Quotas,
    namespace_not_found,
    validate_namespace_name,
    validate_quotas,
)
from nimbus.errors import (
    NamespaceExistsError,
    NamespaceNotEmptyError,
    NamespaceProtectedError,
)
from nimbus.pool.manager import PoolManager
from nimbus.store.base import Store


def default_quotas(settings: Settings) -> Quotas:
    """What a namespace gets for each quota its creator leaves out."""
    return Quotas(
        max_functions=settings.default_quota_max_functions,
        max_code_bytes=settings.default_quota_max_code_bytes,
        max_concurrent_instances=settings.default_quota_max_concurrent_instances,
        max_requests_per_s=settings.default_quota_max_requests_per_s,
    )


class NamespaceService:
    def __init__(
        self, *, store: Store, defaults: Quotas, pools: PoolManager, rates: RateLimiter
    ) -> None:
        self._store = store
        self._defaults = defaults
        self._pools = pools
        self._rates = rates
        self._cache: dict[str, Namespace] = {}
        self._lock = asyncio.Lock()
        #: Checks run before a namespace is deleted; each raises NamespaceNotEmptyError when
        #: the namespace still owns something of its kind (object storage buckets).
        self.before_delete: list[Callable[[str], Awaitable[None]]] = []

    def load(self) -> None:
        """Make sure ``default`` exists, then load every namespace and apply its quotas."""
        self._store.ensure_namespace(Namespace(DEFAULT_NAMESPACE, self._defaults))
        for namespace in self._store.list_namespaces():
            self._remember(namespace)

    def _remember(self, namespace: Namespace) -> None:
        self._cache[namespace.name] = namespace
        self._pools.set_namespace_limit(namespace.name, namespace.quotas.max_concurrent_instances)
        self._rates.set_rate(namespace.name, namespace.quotas.max_requests_per_s)

    def _forget(self, name: str) -> None:
        self._cache.pop(name, None)
        self._pools.set_namespace_limit(name, None)
        self._rates.set_rate(name, None)

    def exists(self, name: str) -> bool:
        return name in self._cache

    def get(self, name: str) -> Namespace:
        namespace = self._cache.get(name)
        if namespace is None:
            raise namespace_not_found(name)
        return namespace

    def list(self) -> list[Namespace]:
        return sorted(self._cache.values(), key=lambda n: n.name)

    async def usage(self, name: str) -> NamespaceUsage:
        self.get(name)
        functions, code_bytes = await asyncio.to_thread(self._store.function_usage, name)
        return NamespaceUsage(
            functions=functions,
            code_bytes=code_bytes,
            instances=self._pools.namespace_instances(name),
        )

    async def create(self, actor: Actor, name: str, quotas: dict[str, Any]) -> Namespace:
        """Create a namespace; quotas not given take the server's defaults."""
        validate_namespace_name(name)
        namespace = Namespace(name, validate_quotas(self._defaults.replace(**quotas)))
        async with self._lock:
            entry = AuditEntry(
                actor, name, AuditAction.NAMESPACE_CREATE, name, {"quotas": _given(quotas)}
            )
            if not await asyncio.to_thread(self._store.create_namespace, namespace, entry):
                raise NamespaceExistsError(
                    f"namespace {name!r} already exists; change its quotas with "
                    f"`nimbus namespace update {name}`"
                )
            stored = await asyncio.to_thread(self._store.get_namespace, name)
            assert stored is not None
            self._remember(stored)
        return stored

    async def update(self, actor: Actor, name: str, quotas: dict[str, Any]) -> Namespace:
        """Change the quotas given (None: unlimited); the others stay."""
        async with self._lock:
            current = self.get(name)
            new = validate_quotas(current.quotas.replace(**quotas))
            if new == current.quotas:
                return current
            entry = AuditEntry(
                actor, name, AuditAction.NAMESPACE_UPDATE, name, {"quotas": _given(quotas)}
            )
            stored = await asyncio.to_thread(self._store.update_namespace, name, new, entry)
            if stored is None:
                raise namespace_not_found(name)
            self._remember(stored)
        return stored

    async def delete(self, actor: Actor, name: str) -> None:
        if name == DEFAULT_NAMESPACE:
            raise NamespaceProtectedError(
                f"namespace {DEFAULT_NAMESPACE!r} always exists and cannot be deleted"
            )
        async with self._lock:
            self.get(name)
            for check in self.before_delete:
                await check(name)
            entry = AuditEntry(actor, name, AuditAction.NAMESPACE_DELETE, name)
            deleted, functions, keys = await asyncio.to_thread(
                self._store.delete_namespace, name, entry
            )
            if not deleted and (functions or keys):
                raise NamespaceNotEmptyError(
                    f"namespace {name!r} still has {functions} function(s) and {keys} live "
                    "key(s); delete the functions (`nimbus --namespace "
                    f"{name} delete NAME`) and revoke the keys (`nimbus key revoke ID`) first",
                    functions=functions,
                    keys=keys,
                )
            self._forget(name)
        if not deleted:
            raise namespace_not_found(name)


def _given(quotas: dict[str, Any]) -> dict[str, Any]:
    return {k: quotas[k] for k in QUOTA_NAMES if k in quotas}
