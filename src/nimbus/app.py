"""The composition root: builds every part of one Nimbus node and runs its lifecycle."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from nimbus.codestore import CodeStore
from nimbus.config import Settings
from nimbus.control.functions import FunctionService
from nimbus.dispatch.directory import FunctionDirectory
from nimbus.dispatch.dispatcher import Dispatcher
from nimbus.errors import UnavailableError
from nimbus.gateway.auth import KeyRing
from nimbus.logs.store import LogStore
from nimbus.pool.manager import PoolManager
from nimbus.runtimes.registry import RuntimeRegistry, discover
from nimbus.sandbox.base import Sandbox
from nimbus.sandbox.process import ProcessSandbox
from nimbus.store.sqlite import SqliteStore

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
    )


class Platform:
    """Everything one node runs: store, code, logs, pools, dispatch, control."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(settings.db_path)
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
        self.directory = FunctionDirectory(self.store)
        self.dispatcher = Dispatcher(self.directory, self.pools)
        self.functions = FunctionService(
            store=self.store,
            codestore=self.codestore,
            registry=self.registry,
            directory=self.directory,
            pools=self.pools,
            logs=self.logs,
        )
        self.keys = KeyRing(self.store)

    async def startup(self) -> None:
        stale = self.sandbox.cleanup_stale()
        if stale:
            log.warning("killed %d instances left behind by an earlier run", stale)
        self.logs.start()
        self.pools.start()
        await self.sandbox.prepare()

    async def shutdown(self) -> None:
        await self.pools.shutdown(self.settings.shutdown_grace_s)
        await self.sandbox.close()
        await self.logs.close()
        self.store.close()
