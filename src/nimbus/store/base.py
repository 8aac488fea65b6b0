"""The metadata store interface. Backends: ``sqlite`` (default); PostgreSQL later.

Methods are synchronous and short; async callers run them with
``asyncio.to_thread``. Every write is one transaction: a crash leaves either
the old or the new row, never half of one.
"""

from __future__ import annotations

from typing import Protocol

from nimbus.domain.function import FunctionConfig
from nimbus.domain.keys import ApiKey


class Store(Protocol):
    def get_function(self, namespace: str, name: str) -> FunctionConfig | None:
        """The function, or None."""

    def list_functions(self, namespace: str | None) -> list[FunctionConfig]:
        """Functions of one namespace (all when None), ordered by name."""

    def save_function(self, config: FunctionConfig) -> tuple[FunctionConfig, bool]:
        """Create or replace; returns the stored row (revision bumped) and whether it was created."""

    def delete_function(self, namespace: str, name: str) -> bool:
        """Delete; False when there was nothing to delete."""

    def code_hashes_in_use(self) -> set[str]:
        """Every code hash some function refers to (for garbage collection)."""

    def add_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a key under the hash of its secret."""

    def find_key(self, secret_hash: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_hash``, unless revoked."""

    def close(self) -> None:
        """Release connections."""
