"""All pools of this node: one per runnable version of a function, plus draining ones.

A pool is keyed by (namespace, name, version): ``$LATEST`` (whose pool is
replaced, the old one draining, when the function changes) or a published
version number (immutable; its pool lives until the version or function is
deleted). A background task applies each pool's scaling decisions (release of
idle instances, replacement of provisioned ones). The pools of one function
share its :class:`FunctionBudget` (reserved concurrency); the pools of one
namespace share its :class:`NamespaceBudget` (the quota on concurrent
instances), whose limits the control layer and the dispatcher set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path

from nimbus.codestore import CodeStore
from nimbus.config import Settings
from nimbus.domain.function import FunctionConfig
from nimbus.logs.store import LogStore
from nimbus.pool.budget import FunctionBudget, NamespaceBudget
from nimbus.pool.instance import Instance, InstanceState
from nimbus.pool.pool import Pool
from nimbus.runtime_api.storage import StorageGate
from nimbus.runtimes.registry import RuntimeRegistry
from nimbus.sandbox.base import Sandbox

log = logging.getLogger("nimbus.pool")


class PoolManager:
    def __init__(
        self,
        *,
        settings: Settings,
        sandbox: Sandbox,
        registry: RuntimeRegistry,
        codestore: CodeStore,
        logs: LogStore,
    ) -> None:
        self._settings = settings
        self._sandbox = sandbox
        self._registry = registry
        self._codestore = codestore
        self._logs = logs
        self._pools: dict[tuple[str, str, str], Pool] = {}
        self._function_budgets: dict[tuple[str, str], FunctionBudget] = {}
        #: Provisioned instances wanted per pool key.
        self._provisioned: dict[tuple[str, str, str], int] = {}
        self._draining: set[Pool] = set()
        self._budgets: dict[str, NamespaceBudget] = {}
        self._code_dirs: dict[str, Path] = {}
        self._socket_dir = settings.run_dir / "sockets"
        self._socket_dir.mkdir(parents=True, exist_ok=True)
        self._reaper: asyncio.Task[None] | None = None
        #: Object storage for instances, on their Runtime API sockets (set by the platform).
        self.storage: StorageGate | None = None

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="nimbus-reaper")

    def pool_for(self, config: FunctionConfig) -> Pool:
        key = config.pool_key
        pool = self._pools.get(key)
        if pool is not None:
            if pool.config.revision >= config.revision or config.version != "$LATEST":
                return pool
            self._retire(pool)
        pool = Pool(
            config,
            self._settings,
            self._launch,
            self._forget,
            self.budget(config.namespace),
            self.function_budget(config.namespace, config.name),
        )
        self._pools[key] = pool
        wanted = self._provisioned.get(key, 0)
        if wanted:
            pool.set_min_instances(wanted)
        return pool

    def function_budget(self, namespace: str, name: str) -> FunctionBudget:
        budget = self._function_budgets.get((namespace, name))
        if budget is None:
            budget = self._function_budgets[(namespace, name)] = FunctionBudget(name)
        return budget

    def set_function_limit(self, namespace: str, name: str, limit: int | None) -> None:
        """The function's reserved concurrency (None: none) on this node."""
        budget = self.function_budget(namespace, name)
        if budget.limit != limit:
            budget.set_limit(limit)

    def set_provisioned(self, wanted: dict[tuple[str, str, str], int]) -> None:
        """Provisioned instances per (namespace, function, version): pools not named
        keep none. Pools are created for them now, so instances start at once."""
        self._provisioned = dict(wanted)
        for key, pool in self._pools.items():
            if pool.min_instances != wanted.get(key, 0):
                pool.set_min_instances(wanted.get(key, 0))

    def provisioned_pool(self, config: FunctionConfig, count: int) -> Pool:
        """The pool of a version with provisioned instances (created if needed)."""
        self._provisioned[config.pool_key] = count
        pool = self.pool_for(config)
        pool.set_min_instances(count)
        return pool

    def pool_status(self, namespace: str, name: str, version: str) -> dict[str, int] | None:
        pool = self._pools.get((namespace, name, version))
        if pool is None:
            return None
        return {**pool.stats(), "ready": pool.ready_count()}

    def budget(self, namespace: str) -> NamespaceBudget:
        budget = self._budgets.get(namespace)
        if budget is None:
            budget = self._budgets[namespace] = NamespaceBudget(namespace)
        return budget

    def set_namespace_limit(self, namespace: str, max_instances: int | None) -> None:
        """The namespace's quota on concurrent instances (None: unlimited) on this node."""
        self.budget(namespace).set_limit(max_instances)

    def namespace_instances(self, namespace: str) -> int:
        """Instances of the namespace's functions on this node, starting ones included."""
        budget = self._budgets.get(namespace)
        return budget.used() if budget is not None else 0

    def retire(self, namespace: str, name: str) -> None:
        """The function's head changed: its ``$LATEST`` pool drains."""
        pool = self._pools.get((namespace, name, "$LATEST"))
        if pool is not None:
            self._retire(pool)

    def retire_version(self, namespace: str, name: str, version: str) -> None:
        pool = self._pools.get((namespace, name, version))
        if pool is not None:
            self._retire(pool)

    def retire_function(self, namespace: str, name: str) -> None:
        """The function went away: every pool of it drains."""
        for key, pool in list(self._pools.items()):
            if key[:2] == (namespace, name):
                self._retire(pool)
        self._function_budgets.pop((namespace, name), None)

    def _retire(self, pool: Pool) -> None:
        key = pool.config.pool_key
        if self._pools.get(key) is pool:
            del self._pools[key]
        self._draining.add(pool)
        pool.drain()

    def _forget(self, pool: Pool) -> None:
        self._draining.discard(pool)

    async def prepare_code(self, code_sha256: str) -> Path:
        """Unpack a package once (in a thread); later calls are a dict lookup."""
        path = self._code_dirs.get(code_sha256)
        if path is None:
            path = await asyncio.to_thread(self._codestore.unpack, code_sha256)
            self._code_dirs[code_sha256] = path
        return path

    async def _launch(self, config: FunctionConfig, on_dead: object) -> Instance:
        code_dir = await self.prepare_code(config.code_sha256)
        runtime = self._registry.get(config.runtime)
        instance = Instance(
            instance_id=uuid.uuid4().hex[:16],
            config=config,
            runtime=runtime,
            settings=self._settings,
            logs=self._logs,
            on_dead=on_dead,  # type: ignore[arg-type]
            storage=self.storage,
        )
        await instance.launch(self._sandbox, self._registry, code_dir, self._socket_dir)
        return instance

    def all_pools(self) -> list[Pool]:
        return [*self._pools.values(), *self._draining]

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(1.0, self._settings.keepalive_s / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for pool in self.all_pools():
                try:
                    pool.reap(now)
                except Exception:  # one broken pool must not stop releasing the others
                    log.exception("reaping %s failed", pool.config.name)

    async def shutdown(self, grace_s: float) -> None:
        """Drain every pool; calls in flight get ``grace_s`` to finish, then all is killed."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        pools = self.all_pools()
        for pool in pools:
            pool.drain()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(
            i.state is InstanceState.BUSY for p in pools for i in p.instances.values()
        ):
            await asyncio.sleep(0.05)
        for pool in pools:
            pool.kill_all()
        # Give exit watchers a moment to reap and clean up sockets and pidfiles.
        for _ in range(40):
            if not any(p.instances for p in pools):
                break
            await asyncio.sleep(0.025)
