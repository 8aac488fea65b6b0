"""Use cases that change functions: upload code, create/replace, update, delete.

Each validates everything first and then writes once, so a refused request
touches nothing, and an interrupted one leaves the old function or the new
one, never a mix (the code blob is stored before the metadata row points to it).
The namespace's quotas on functions and code bytes are checked before the
write, and the audit entry is written in the same transaction as the change.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nimbus.codestore import CodeStore, StoredPackage
from nimbus.codestore.package import handler_file_candidates
from nimbus.control.namespaces import NamespaceService
from nimbus.dispatch.directory import FunctionDirectory
from nimbus.domain.audit import Actor, AuditAction, AuditEntry
from nimbus.domain.function import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    FunctionConfig,
    function_not_found,
    validate_name,
    validate_settings,
)
from nimbus.domain.quota import check_function_change
from nimbus.errors import HandlerMissingError, InvalidSettingError, ValidationError
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
    secret_env: dict[str, str] = _UNSET
    network: str = _UNSET
    async_max_attempts: int = _UNSET
    async_max_age_s: int = _UNSET
    on_success: str | None = _UNSET
    on_failure: str | None = _UNSET

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
        namespaces: NamespaceService,
    ) -> None:
        self._namespaces = namespaces
        self._store = store
        self._codestore = codestore
        self._registry = registry
        self._directory = directory
        self._pools = pools
        self._logs = logs
        self._lock = asyncio.Lock()
        #: Called after a function is deleted (its asynchronous events go with it).
        self.on_delete: list[Callable[[str, str], Awaitable[None]]] = []

    async def upload_code(self, chunks: AsyncIterator[bytes]) -> StoredPackage:
        return await self._codestore.put_stream(chunks)

    async def get(self, namespace: str, name: str) -> FunctionConfig:
        return await self._directory.get(namespace, validate_name(name))

    async def list(self, namespace: str | None) -> list[FunctionConfig]:
        return await asyncio.to_thread(self._store.list_functions, namespace)

    async def put(
        self,
        namespace: str,
        name: str,
        changes: FunctionChanges,
        *,
        replace: bool,
        actor: Actor | None = None,
    ) -> tuple[FunctionConfig, bool]:
        """Create or change a function. ``replace``: fields not given take their defaults
        (PUT); otherwise they keep their current values (PATCH, which needs the function).
        ``actor``: who asked, for the audit trail."""
        validate_name(name)
        async with self._lock:
            quotas = self._namespaces.get(namespace).quotas
            current = await asyncio.to_thread(self._store.get_function, namespace, name)
            given = changes.given()
            if current is None and not replace:
                raise function_not_found(name)
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
            usage = await self._namespaces.usage(namespace)
            check_function_change(
                namespace,
                quotas,
                usage,
                creating=current is None,
                old_code_bytes=current.code_size if current is not None else 0,
                new_code_bytes=config.code_size,
            )
            entry = None
            if actor is not None:
                action = (
                    AuditAction.FUNCTION_CREATE if current is None else AuditAction.FUNCTION_UPDATE
                )
                entry = AuditEntry(actor, namespace, action, name, _change_details(current, config))
            stored, created = await asyncio.to_thread(self._store.save_function, config, entry)
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
            secret_env=config.secret_env,
            network=config.network,
            async_max_attempts=config.async_max_attempts,
            async_max_age_s=config.async_max_age_s,
            on_success=config.on_success,
            on_failure=config.on_failure,
        )
        for field_name in ("on_success", "on_failure"):
            if getattr(config, field_name) == config.name:
                raise InvalidSettingError(
                    f"{field_name} names the function itself, which would invoke it in a "
                    "loop; name another function"
                )
        if config.is_service and runtime.kind != "python":
            raise InvalidSettingError(
                f"handler {config.handler!r} (module:app) makes the function an HTTP service, "
                f"which needs a python runtime, not {config.runtime!r}; use module.function "
                "for an event handler"
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

    async def delete(self, namespace: str, name: str, *, actor: Actor | None = None) -> None:
        validate_name(name)
        entry = AuditEntry.by(actor, namespace, AuditAction.FUNCTION_DELETE, name)
        async with self._lock:
            deleted = await asyncio.to_thread(self._store.delete_function, namespace, name, entry)
        if not deleted:
            raise function_not_found(name)
        self._directory.remove(namespace, name)
        self._pools.retire_function(namespace, name)
        for hook in self.on_delete:
            await hook(namespace, name)
        await asyncio.to_thread(self._logs.delete_function, namespace, name)


_SETTINGS = (
    "runtime",
    "handler",
    "code_sha256",
    "memory_mb",
    "timeout_s",
    "env",
    "description",
    "max_instances",
    "secret_env",
    "network",
    "async_max_attempts",
    "async_max_age_s",
    "on_success",
    "on_failure",
)


def _same_settings(a: FunctionConfig, b: FunctionConfig) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _SETTINGS)


def _change_details(old: FunctionConfig | None, new: FunctionConfig) -> dict[str, Any]:
    """What changed, for the audit trail: field names, never values of env or secrets."""
    changed = [f for f in _SETTINGS if old is None or getattr(old, f) != getattr(new, f)]
    details: dict[str, Any] = {"changed": changed, "code_sha256": new.code_sha256}
    if "secret_env" in changed:
        details["secret_env_keys"] = sorted(new.secret_env)
    return details
