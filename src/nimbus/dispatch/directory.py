"""Function metadata cached in memory, so the invoke path never touches the database.

The control layer updates the cache on every write it makes (one process owns
the store today; several gateways will need change notifications later).
"""

from __future__ import annotations

import asyncio

from nimbus.domain.function import FunctionConfig, function_not_found
from nimbus.store.base import Store


class FunctionDirectory:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[tuple[str, str], FunctionConfig] = {}

    async def get(self, namespace: str, name: str) -> FunctionConfig:
        config = self._cache.get((namespace, name))
        if config is None:
            config = await asyncio.to_thread(self._store.get_function, namespace, name)
            if config is None:
                raise function_not_found(name)
            self._cache[(namespace, name)] = config
        return config

    def put(self, config: FunctionConfig) -> None:
        self._cache[config.key] = config

    def remove(self, namespace: str, name: str) -> None:
        self._cache.pop((namespace, name), None)
