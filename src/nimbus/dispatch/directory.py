"""Function metadata cached in memory, so the invoke path never touches the database.

Heads (``$LATEST``), published versions and aliases are cached; the control
layer updates or drops entries on every write it makes (one process owns the
store today; several gateways will need change notifications later).
"""

from __future__ import annotations

import asyncio
import random

from nimbus.domain.function import FunctionConfig, function_not_found
from nimbus.domain.version import Alias, Qualifier, alias_not_found, version_not_found
from nimbus.store.base import Store


class FunctionDirectory:
    def __init__(self, store: Store, rand: random.Random | None = None) -> None:
        self._store = store
        self._cache: dict[tuple[str, str], FunctionConfig] = {}
        self._versions: dict[tuple[str, str, int], FunctionConfig] = {}
        self._aliases: dict[tuple[str, str, str], Alias] = {}
        self._rand = rand or random.Random()

    async def get(self, namespace: str, name: str) -> FunctionConfig:
        config = self._cache.get((namespace, name))
        if config is None:
            config = await asyncio.to_thread(self._store.get_function, namespace, name)
            if config is None:
                raise function_not_found(name)
            self._cache[(namespace, name)] = config
        return config

    async def version(self, namespace: str, name: str, number: int) -> FunctionConfig:
        config = self._versions.get((namespace, name, number))
        if config is None:
            await self.get(namespace, name)  # Function.NotFound first
            config = await asyncio.to_thread(self._store.get_version, namespace, name, number)
            if config is None:
                raise version_not_found(name, number)
            self._versions[(namespace, name, number)] = config
        return config

    async def alias(self, namespace: str, name: str, alias: str) -> Alias:
        found = self._aliases.get((namespace, name, alias))
        if found is None:
            await self.get(namespace, name)
            found = await asyncio.to_thread(self._store.get_alias, namespace, name, alias)
            if found is None:
                raise alias_not_found(name, alias)
            self._aliases[(namespace, name, alias)] = found
        return found

    async def resolve(
        self, namespace: str, name: str, qualifier: Qualifier
    ) -> tuple[FunctionConfig, FunctionConfig]:
        """(the function's head, the configuration this call runs)."""
        head = await self.get(namespace, name)
        if qualifier.latest:
            return head, head
        if qualifier.version is not None:
            return head, await self.version(namespace, name, qualifier.version)
        assert qualifier.alias is not None
        alias = await self.alias(namespace, name, qualifier.alias)
        return head, await self.version(namespace, name, alias.pick(self._rand))

    def put(self, config: FunctionConfig) -> None:
        self._cache[config.key] = config

    def put_alias(self, alias: Alias) -> None:
        self._aliases[(alias.namespace, alias.function, alias.name)] = alias

    def drop_alias(self, namespace: str, name: str, alias: str) -> None:
        self._aliases.pop((namespace, name, alias), None)

    def drop_version(self, namespace: str, name: str, number: int) -> None:
        self._versions.pop((namespace, name, number), None)

    def remove(self, namespace: str, name: str) -> None:
        self._cache.pop((namespace, name), None)
        for key in [k for k in self._versions if k[:2] == (namespace, name)]:
            del self._versions[key]
        for akey in [k for k in self._aliases if k[:2] == (namespace, name)]:
            del self._aliases[akey]
