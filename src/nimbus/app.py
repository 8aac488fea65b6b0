"""The composition root: builds every part of one Nimbus node and runs its lifecycle."""

from __future__ import annotations

import logging

from nimbus.codestore import CodeStore
from nimbus.config import Settings
from nimbus.control.functions import FunctionService
from nimbus.dispatch.directory import FunctionDirectory
from nimbus.dispatch.dispatcher import Dispatcher
from nimbus.gateway.auth import KeyRing
from nimbus.logs.store import LogStore
from nimbus.pool.manager import PoolManager
from nimbus.runtimes.registry import RuntimeRegistry, discover
from nimbus.sandbox.base import Sandbox
from nimbus.sandbox.process import ProcessSandbox
from nimbus.store.sqlite import SqliteStore

log = logging.getLogger("nimbus")


def make_sandbox(settings: Settings) -> Sandbox:
    if settings.sandbox == "process":
        return ProcessSandbox(settings.run_dir)
    raise ValueError(f"unknown sandbox {settings.sandbox!r}")


class Platform:
    """Everything one node runs: store, code, logs, pools, dispatch, control."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(settings.db_path)
        self.codestore = CodeStore(settings.code_dir, settings.package_limits)
        self.registry = RuntimeRegistry(discover())
        self.sandbox = make_sandbox(settings)
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

    async def shutdown(self) -> None:
        await self.pools.shutdown(self.settings.shutdown_grace_s)
        await self.logs.close()
        self.store.close()
