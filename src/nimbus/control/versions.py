"""Use cases for releases and scaling: publish, versions, aliases, reserved concurrency,
provisioned instances.

Every write goes to the store first (one transaction, audited), then to the
in-memory directory the invoke path reads, then to the pools. Moving an alias
never touches a call in flight: calls already leased finish on the version
they resolved; the next calls resolve the alias again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from nimbus.dispatch.directory import FunctionDirectory
from nimbus.domain.audit import Actor, AuditAction, AuditEntry
from nimbus.domain.function import MAX_INSTANCES_RANGE, FunctionConfig, validate_name
from nimbus.domain.version import (
    LATEST,
    MAX_DESCRIPTION_CHARS,
    Alias,
    alias_not_found,
    parse_qualifier,
    validate_alias_name,
    validate_weights,
)
from nimbus.errors import InvalidQualifierError, InvalidSettingError
from nimbus.pool.manager import PoolManager
from nimbus.store.base import Store


@dataclass(frozen=True)
class ProvisionedStatus:
    qualifier: str
    requested: int
    #: Version → (instances wanted for it, instances initialised and able to take calls).
    versions: dict[str, tuple[int, int]]

    @property
    def ready(self) -> int:
        return sum(ready for _wanted, ready in self.versions.values())


class VersionService:
    def __init__(self, *, store: Store, directory: FunctionDirectory, pools: PoolManager) -> None:
        self._store = store
        self._directory = directory
        self._pools = pools
        self._lock = asyncio.Lock()

    # ---- versions ------------------------------------------------------------------
    async def publish(
        self,
        namespace: str,
        name: str,
        *,
        description: str | None = None,
        prewarm: bool = False,
        actor: Actor | None = None,
    ) -> tuple[FunctionConfig, bool]:
        """Snapshot ``$LATEST``; an unchanged head gives back its existing version."""
        validate_name(name)
        if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidSettingError(
                f"description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )
        await self._directory.get(namespace, name)
        entry = AuditEntry.by(actor, namespace, AuditAction.VERSION_PUBLISH, name)
        async with self._lock:
            version, created = await asyncio.to_thread(
                self._store.publish_version, namespace, name, description, entry
            )
        head = await self._directory.get(namespace, name)
        if prewarm and head.reserved_concurrency != 0:
            self._pools.pool_for(version).prewarm()
        return self._current(head, version), created

    @staticmethod
    def _current(head: FunctionConfig, version: FunctionConfig) -> FunctionConfig:
        """A version as shown: its frozen settings, the function's live ones beside them."""
        return dataclasses.replace(
            version, reserved_concurrency=head.reserved_concurrency, revision=head.revision
        )

    async def list_versions(self, namespace: str, name: str) -> list[FunctionConfig]:
        head = await self._directory.get(namespace, validate_name(name))
        found = await asyncio.to_thread(self._store.list_versions, namespace, name)
        return [self._current(head, v) for v in found]

    async def get_version(self, namespace: str, name: str, number: int) -> FunctionConfig:
        head = await self._directory.get(namespace, validate_name(name))
        return self._current(head, await self._directory.version(namespace, name, number))

    async def delete_version(
        self, namespace: str, name: str, number: int, *, actor: Actor | None = None
    ) -> None:
        await self._directory.version(namespace, validate_name(name), number)
        entry = AuditEntry.by(actor, namespace, AuditAction.VERSION_DELETE, f"{name}:{number}")
        async with self._lock:
            await asyncio.to_thread(self._store.delete_version, namespace, name, number, entry)
        self._directory.drop_version(namespace, name, number)
        self._pools.retire_version(namespace, name, str(number))

    # ---- aliases ---------------------------------------------------------------------
    async def put_alias(
        self,
        namespace: str,
        name: str,
        alias_name: str,
        *,
        version: int,
        weights: dict[int, float] | None = None,
        description: str = "",
        actor: Actor | None = None,
    ) -> tuple[Alias, bool]:
        """Create or move an alias (atomically: a call resolves the old or the new one)."""
        validate_name(name)
        validate_alias_name(alias_name)
        await self._directory.get(namespace, name)  # Function.NotFound before the rest
        if version < 1:
            raise InvalidQualifierError("an alias points to a published version (1, 2, ...)")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidSettingError(
                f"description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )
        alias = Alias(
            namespace=namespace,
            function=name,
            name=alias_name,
            version=version,
            weights=validate_weights(version, weights or {}),
            description=description,
        )
        await self._directory.get(namespace, name)
        entry = AuditEntry.by(actor, namespace, AuditAction.ALIAS_PUT, f"{name}:{alias_name}")
        async with self._lock:
            stored, created = await asyncio.to_thread(self._store.put_alias, alias, entry)
            self._directory.put_alias(stored)
            await self._refresh_provisioned()
        return stored, created

    async def get_alias(self, namespace: str, name: str, alias_name: str) -> Alias:
        return await self._directory.alias(namespace, validate_name(name), alias_name)

    async def list_aliases(self, namespace: str, name: str) -> list[Alias]:
        await self._directory.get(namespace, validate_name(name))
        return await asyncio.to_thread(self._store.list_aliases, namespace, name)

    async def delete_alias(
        self, namespace: str, name: str, alias_name: str, *, actor: Actor | None = None
    ) -> None:
        await self._directory.get(namespace, validate_name(name))
        entry = AuditEntry.by(actor, namespace, AuditAction.ALIAS_DELETE, f"{name}:{alias_name}")
        async with self._lock:
            deleted = await asyncio.to_thread(
                self._store.delete_alias, namespace, name, alias_name, entry
            )
            if not deleted:
                raise alias_not_found(name, alias_name)
            self._directory.drop_alias(namespace, name, alias_name)
            await self._refresh_provisioned()

    # ---- reserved concurrency ------------------------------------------------------------
    async def set_concurrency(
        self, namespace: str, name: str, reserved: int | None, *, actor: Actor | None = None
    ) -> FunctionConfig:
        """Cap the function's concurrent instances across its versions (0 disables it;
        None removes the cap)."""
        validate_name(name)
        lo, hi = 0, MAX_INSTANCES_RANGE[1]
        if reserved is not None and not lo <= reserved <= hi:
            raise InvalidSettingError(
                f"reserved concurrency must be between {lo} and {hi}, got {reserved}"
            )
        await self._directory.get(namespace, name)
        if reserved:
            provisioned = sum(
                c
                for _ns, _fn, _q, c in await asyncio.to_thread(
                    self._store.list_provisioned, namespace, name
                )
            )
            if provisioned > reserved:
                raise InvalidSettingError(
                    f"the function has {provisioned} provisioned instances; a reserved "
                    f"concurrency of {reserved} would leave no room for them; lower the "
                    "provisioned instances first"
                )
        entry = AuditEntry.by(actor, namespace, AuditAction.CONCURRENCY_SET, name)
        async with self._lock:
            head = await asyncio.to_thread(
                self._store.set_reserved_concurrency, namespace, name, reserved, entry
            )
        self._directory.put(head)
        self._pools.set_function_limit(namespace, name, reserved)
        return head

    # ---- provisioned instances -----------------------------------------------------------
    async def set_provisioned(
        self,
        namespace: str,
        name: str,
        qualifier: str,
        count: int,
        *,
        actor: Actor | None = None,
    ) -> ProvisionedStatus:
        validate_name(name)
        parsed = parse_qualifier(qualifier)
        if parsed.latest:
            raise InvalidQualifierError(
                "provisioned instances are set on a version or an alias, not on $LATEST "
                "(which changes with every deploy); publish a version first"
            )
        if not 0 <= count <= MAX_INSTANCES_RANGE[1]:
            raise InvalidSettingError(
                f"provisioned instances must be between 0 and {MAX_INSTANCES_RANGE[1]}, got {count}"
            )
        if parsed.version is not None:
            await self._directory.version(namespace, name, parsed.version)
        else:
            assert parsed.alias is not None
            await self._directory.alias(namespace, name, parsed.alias)
        head = await self._directory.get(namespace, name)
        if head.reserved_concurrency is not None and count:
            others = sum(
                c
                for _ns, _fn, q, c in await asyncio.to_thread(
                    self._store.list_provisioned, namespace, name
                )
                if q != str(parsed)
            )
            if others + count > head.reserved_concurrency:
                raise InvalidSettingError(
                    f"{others + count} provisioned instances would exceed the function's "
                    f"reserved concurrency of {head.reserved_concurrency}; raise it first "
                    f"(`nimbus concurrency set {name} N`)"
                )
        entry = AuditEntry.by(actor, namespace, AuditAction.PROVISIONED_SET, f"{name}:{qualifier}")
        async with self._lock:
            await asyncio.to_thread(
                self._store.set_provisioned, namespace, name, str(parsed), count, entry
            )
            await self._refresh_provisioned()
        found = await self.provisioned(namespace, name, str(parsed))
        return found[0] if found else ProvisionedStatus(str(parsed), 0, {})

    async def provisioned(
        self, namespace: str, name: str, qualifier: str | None = None
    ) -> list[ProvisionedStatus]:
        await self._directory.get(namespace, validate_name(name))
        settings = await asyncio.to_thread(self._store.list_provisioned, namespace, name)
        out = []
        for _ns, _fn, q, count in settings:
            if qualifier is not None and q != qualifier:
                continue
            shares = await self._shares(namespace, name, q, count)
            versions = {}
            for version, wanted in shares.items():
                status = self._pools.pool_status(namespace, name, version) or {}
                versions[version] = (wanted, int(status.get("ready", 0)))
            out.append(ProvisionedStatus(q, count, versions))
        return out

    async def _shares(
        self, namespace: str, name: str, qualifier: str, count: int
    ) -> dict[str, int]:
        """How a qualifier's provisioned instances split over versions (an alias's by its
        weights)."""
        parsed = parse_qualifier(qualifier)
        if parsed.version is not None:
            return {str(parsed.version): count}
        assert parsed.alias is not None
        alias = await self._directory.alias(namespace, name, parsed.alias)
        shares: dict[str, int] = {}
        given = 0
        for version, weight in alias.weights.items():
            shares[str(version)] = round(count * weight)
            given += shares[str(version)]
        shares[str(alias.version)] = count - given
        return shares

    async def load(self) -> None:
        """At start: provisioned instances come back after a restart."""
        async with self._lock:
            await self._refresh_provisioned()

    async def _refresh_provisioned(self) -> None:
        """Recompute provisioned instances per version from every setting, and hand them
        to the pools (which start or stop instances to match)."""
        wanted: dict[tuple[str, str, str], int] = {}
        configs: dict[tuple[str, str, str], FunctionConfig] = {}
        for namespace, name, qualifier, count in await asyncio.to_thread(
            self._store.list_provisioned
        ):
            for version, share in (await self._shares(namespace, name, qualifier, count)).items():
                if share <= 0 or version == LATEST:
                    continue
                key = (namespace, name, version)
                wanted[key] = wanted.get(key, 0) + share
                configs[key] = await self._directory.version(namespace, name, int(version))
        self._pools.set_provisioned(wanted)
        for key, count in wanted.items():
            self._pools.provisioned_pool(configs[key], count)


def status_dict(status: ProvisionedStatus) -> dict[str, Any]:
    return {
        "qualifier": status.qualifier,
        "requested": status.requested,
        "ready": status.ready,
        "versions": {v: {"wanted": w, "ready": r} for v, (w, r) in status.versions.items()},
    }
