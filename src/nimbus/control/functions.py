"""Use cases that change functions: upload code, create/replace, update, delete.

Each validates everything first and then writes once, so a refused request
touches nothing, and an interrupted one leaves the old function or the new
one, never a mix (the code blob is stored before the metadata row points to it).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nimbus.codestore import CodeStore, StoredPackage
from nimbus.codestore.package import handler_file_candidates
from nimbus.dispatch.directory import FunctionDirectory
from nimbus.domain.function import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    FunctionConfig,
    validate_name,
    validate_settings,
)
from nimbus.errors import FunctionNotFoundError, HandlerMissingError, ValidationError
from nimbus.logs.store import LogStore
from nimbus.pool.manager import PoolManager
from nimbus.runtimes.registry import RuntimeRegistry
from nimbus.store.base import Store

_UNSET: Any = object()


@dataclass(frozen=True)
class FunctionChanges:
    """Fields a caller sets; ``_UNSET`` ones keep their current value."""

    runtime: str = _UNSET
    handler: str = _UNSET
    code_sha256: str = _UNSET
    memory_mb: int = _UNSET
    timeout_s: int = _UNSET
    env: dict[str, str] = _UNSET
    description: str = _UNSET
    max_instances: int | None = _UNSET

    def given(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not _UNSET
        }


class FunctionService:
    def __init__(
        self,
        *,
        store: Store,
        codestore: CodeStore,
        registry: RuntimeRegistry,
        directory: FunctionDirectory,
        pools: PoolManager,
        logs: LogStore,
    ) -> None:
        self._store = store
        self._codestore = codestore
        self._registry = registry
        self._directory = directory
        self._pools = pools
        self._logs = logs
        self._lock = asyncio.Lock()

    async def upload_code(self, chunks: AsyncIterator[bytes]) -> StoredPackage:
        return await self._codestore.put_stream(chunks)

    async def get(self, namespace: str, name: str) -> FunctionConfig:
        return await self._directory.get(namespace, validate_name(name))

    async def list(self, namespace: str | None) -> list[FunctionConfig]:
        return await asyncio.to_thread(self._store.list_functions, namespace)

    async def put(
        self, namespace: str, name: str, changes: FunctionChanges, *, replace: bool
    ) -> tuple[FunctionConfig, bool]:
        """Create or change a function. ``replace``: fields not given take their defaults
        (PUT); otherwise they keep their current values (PATCH, which needs the function)."""
        validate_name(name)
        async with self._lock:
            current = await asyncio.to_thread(self._store.get_function, namespace, name)
            given = changes.given()
            if current is None and not replace:
                raise FunctionNotFoundError(
                    f"function {name!r} does not exist; create it with PUT or `nimbus deploy`"
                )
            if current is None or replace:
                missing = [f for f in ("runtime", "handler", "code_sha256") if f not in given]
                if missing:
                    raise ValidationError(f"creating function {name!r} needs {', '.join(missing)}")
                base = FunctionConfig(
                    namespace=namespace,
                    name=name,
                    runtime="",
                    handler="",
                    code_sha256="",
                    code_size=0,
                    memory_mb=DEFAULT_MEMORY_MB,
                    timeout_s=DEFAULT_TIMEOUT_S,
                )
            else:
                base = current
            config = dataclasses.replace(base, **given)
            config = dataclasses.replace(config, code_size=await self._check(config))
            if current is not None and _same_settings(current, config):
                return current, False
            stored, created = await asyncio.to_thread(self._store.save_function, config)
        self._directory.put(stored)
        if not created:
            self._pools.retire(namespace, name)
        # Unpack ahead of the first call, so the cold start does not pay for it.
        await self._pools.prepare_code(stored.code_sha256)
        return stored, created

    async def _check(self, config: FunctionConfig) -> int:
        """Refuse an invalid configuration; return the size of its code package."""
        runtime = self._registry.get(config.runtime)
        validate_settings(
            memory_mb=config.memory_mb,
            timeout_s=config.timeout_s,
            env=config.env,
            description=config.description,
            max_instances=config.max_instances,
        )
        manifest = await asyncio.to_thread(self._codestore.manifest, config.code_sha256)
        candidates = handler_file_candidates(runtime.kind, config.handler)
        if not any(c in manifest.files for c in candidates):
            if runtime.kind == "custom":
                raise HandlerMissingError(
                    "runtime 'custom' needs an executable file named 'bootstrap' at the root "
                    "of the package"
                )
            raise HandlerMissingError(
                f"handler {config.handler!r} needs {' or '.join(candidates)} in the package; "
                "check the handler name and the package layout"
            )
        if runtime.kind == "custom" and "bootstrap" not in manifest.executables:
            raise HandlerMissingError(
                "'bootstrap' is not executable; set its mode (chmod +x) before zipping"
            )
        return self._codestore.blob_path(config.code_sha256).stat().st_size

    async def delete(self, namespace: str, name: str) -> None:
        validate_name(name)
        async with self._lock:
            deleted = await asyncio.to_thread(self._store.delete_function, namespace, name)
        if not deleted:
            raise FunctionNotFoundError(f"function {name!r} does not exist")
        self._directory.remove(namespace, name)
        self._pools.retire(namespace, name)
        await asyncio.to_thread(self._logs.delete_function, namespace, name)


def _same_settings(a: FunctionConfig, b: FunctionConfig) -> bool:
    fields = (
        "runtime",
        "handler",
        "code_sha256",
        "memory_mb",
        "timeout_s",
        "env",
        "description",
        "max_instances",
    )
    return all(getattr(a, f) == getattr(b, f) for f in fields)
