"""The composition root: builds every part of one Nimbus node and runs its lifecycle."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from nimbus.codestore import CodeStore
from nimbus.config import Settings
from nimbus.control.audit import AuditLog
from nimbus.control.functions import FunctionService
from nimbus.control.keys import KeyService
from nimbus.control.namespaces import NamespaceService, default_quotas
from nimbus.control.triggers import TriggerService
from nimbus.control.versions import VersionService
from nimbus.dispatch.directory import FunctionDirectory
from nimbus.dispatch.dispatcher import Dispatcher
from nimbus.dispatch.events import AsyncInvoker
from nimbus.dispatch.ratelimit import RateLimiter
from nimbus.errors import UnavailableError
from nimbus.gateway.auth import KeyRing
from nimbus.logs.store import LogStore
from nimbus.metrics import Metrics
from nimbus.objects.operations import S3Operations
from nimbus.objects.service import ObjectService
from nimbus.objects.store import ObjectStore
from nimbus.pool.manager import PoolManager
from nimbus.queue.policy import RetryPolicy
from nimbus.queue.sqlite import SqliteQueue
from nimbus.runtime_api.storage import StorageGate
from nimbus.runtimes.registry import RuntimeRegistry, discover
from nimbus.sandbox.base import Sandbox
from nimbus.sandbox.network import EgressNetwork
from nimbus.sandbox.process import ProcessSandbox
from nimbus.store.secretbox import SecretBox, load_key
from nimbus.store.sqlite import SqliteStore
from nimbus.triggers.objects import ObjectTriggerKind
from nimbus.triggers.redis_stream import RedisStreamKind, consumer_node

log = logging.getLogger("nimbus")


def make_sandbox(settings: Settings, default_interpreter: Path) -> Sandbox:
    """The instance launcher the settings ask for; never silently a weaker one."""
    if settings.sandbox == "process":
        return ProcessSandbox(settings.run_dir)
    from nimbus.sandbox import namespaces

    reason = namespaces.availability()
    if reason is not None:
        raise UnavailableError(
            f"cannot isolate instances on this machine: {reason}. Start with "
            "`--sandbox process` to run functions without isolation (development only)."
        )
    digest = hashlib.sha256(str(settings.data_dir).encode()).hexdigest()[:10]
    return namespaces.NamespaceSandbox(
        settings.run_dir,
        pids_max=settings.pids_max,
        default_interpreter=default_interpreter,
        cgroup_parent=f"nimbus-{digest}",
        egress=EgressNetwork(digest, settings.egress_subnet),
    )


class Platform:
    """Everything one node runs: store, code, logs, pools, dispatch, control, tenancy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # It holds key hashes, sealed secrets, every log line and all code: owner only.
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        secrets = SecretBox(load_key(settings.data_dir, settings.secret_key))
        self.store = SqliteStore(settings.db_path, secrets)
        self.codestore = CodeStore(settings.code_dir, settings.package_limits)
        self.registry = RuntimeRegistry(discover())
        interpreter = self.registry.default_python().executable
        assert interpreter is not None
        self.sandbox = make_sandbox(settings, interpreter)
        self.logs = LogStore(settings.logs_db_path, settings.max_log_lines_per_function)
        self.pools = PoolManager(
            settings=settings,
            sandbox=self.sandbox,
            registry=self.registry,
            codestore=self.codestore,
            logs=self.logs,
        )
        self.rates = RateLimiter()
        self.namespaces = NamespaceService(
            store=self.store, defaults=default_quotas(settings), pools=self.pools, rates=self.rates
        )
        self.namespaces.load()
        self.directory = FunctionDirectory(self.store)
        self.metrics = Metrics()
        self.dispatcher = Dispatcher(self.directory, self.pools, self.rates, self.metrics)
        self.functions = FunctionService(
            store=self.store,
            codestore=self.codestore,
            registry=self.registry,
            directory=self.directory,
            pools=self.pools,
            logs=self.logs,
            namespaces=self.namespaces,
        )
        self.queue = SqliteQueue(
            settings.data_dir / "queue.db",
            policy=RetryPolicy(
                base_s=settings.async_retry_base_s, cap_s=settings.async_retry_cap_s
            ),
        )
        self.events = AsyncInvoker(
            queue=self.queue,
            dispatcher=self.dispatcher,
            directory=self.directory,
            max_payload_bytes=settings.max_async_payload_bytes,
            concurrency=settings.async_concurrency,
            result_retention_s=settings.async_result_retention_s,
        )
        self.functions.on_delete.append(self.events.forget_function)
        self.triggers = TriggerService(
            store=self.store, directory=self.directory, queue=self.queue, wake=self.events.wake
        )
        self.functions.on_delete.append(self.triggers.forget_function)
        self.objects = ObjectService(
            store=ObjectStore(settings.data_dir / "objects"),
            queue=self.queue,
            directory=self.directory,
            wake=self.events.wake,
            metrics=self.metrics,
            logs=self.logs,
            max_put_bytes=settings.max_put_object_bytes,
            max_event_depth=settings.max_event_depth,
        )
        self.triggers.register(ObjectTriggerKind(self.objects))
        self.namespaces.before_delete.append(self.objects.refuse_namespace_delete)
        self.pools.storage = StorageGate(S3Operations(self.objects, settings.base_url))
        self.triggers.register(
            RedisStreamKind(
                dispatcher=self.dispatcher,
                secrets=secrets,
                metrics=self.metrics,
                node=consumer_node(settings.data_dir),
                max_payload_bytes=settings.max_sync_payload_bytes,
                grace_s=settings.shutdown_grace_s,
            )
        )
        self.versions = VersionService(store=self.store, directory=self.directory, pools=self.pools)
        self.metrics.watch(self._live_metrics)
        self.keyring = KeyRing(self.store)
        self.keys = KeyService(
            store=self.store, namespaces=self.namespaces, on_revoke=self.keyring.forget
        )
        self.audit = AuditLog(self.store)

    async def startup(self) -> None:
        stale = self.sandbox.cleanup_stale()
        if stale:
            log.warning("killed %d instances left behind by an earlier run", stale)
        self.logs.start()
        self.pools.start()
        # The zygote starts in the background: the API answers at once, and a first cold
        # start that comes before it is ready waits for the same start.
        self._prepare = asyncio.create_task(self._prepare_sandbox(), name="nimbus-sandbox")
        await self.versions.load()  # provisioned instances start again
        self.events.start()  # events stored before a restart run now
        await self.triggers.start()

    def _live_metrics(self) -> Iterator[GaugeMetricFamily]:
        instances = GaugeMetricFamily(
            "nimbus_instances",
            "Instances now, by state (starting, idle, busy), per function version",
            labels=["namespace", "function", "version", "state"],
        )
        for pool in self.pools.all_pools():
            c = pool.config
            stats = pool.stats()
            for state in ("starting", "idle", "busy"):
                instances.add_metric([c.namespace, c.name, c.version, state], stats[state])
        yield instances
        events = GaugeMetricFamily(
            "nimbus_async_events",
            "Asynchronous events in the durable queue, by state",
            labels=["state"],
        )
        for state, count in self.queue.stats().items():
            events.add_metric([state.value], count)
        yield events

    async def _prepare_sandbox(self) -> None:
        try:
            await self.sandbox.prepare()
        except Exception:
            log.exception("the sandbox could not start its zygote; cold starts will retry")

    async def shutdown(self) -> None:
        if not self._prepare.done():
            await asyncio.wait([self._prepare], timeout=5)
        await self.triggers.stop()
        await self.events.stop(self.settings.shutdown_grace_s)
        await self.pools.shutdown(self.settings.shutdown_grace_s)
        await self.sandbox.close()
        await self.logs.close()
        self.store.close()
        self.queue.close()
        self.objects.close()
