"""The metadata store interface. Backends: ``sqlite`` (default); PostgreSQL later.

Methods are synchronous and short; async callers run them with
``asyncio.to_thread``. Every write is one transaction: a crash leaves either
the old or the new row, never half of one. A write given an ``audit_entry``
records it in the same transaction as the change (and only when something
changed). Secrets (``FunctionConfig.secret_env``) are encrypted at rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from nimbus.domain.audit import AuditEntry, AuditRecord
from nimbus.domain.function import FunctionConfig
from nimbus.domain.keys import ApiKey
from nimbus.domain.namespace import Namespace, Quotas


class Store(Protocol):
    # ---- functions ----
    def get_function(self, namespace: str, name: str) -> FunctionConfig | None:
        """The function, or None."""

    def list_functions(self, namespace: str | None) -> list[FunctionConfig]:
        """Functions of one namespace (all when None), ordered by name."""

    def save_function(
        self, config: FunctionConfig, audit_entry: AuditEntry | None = None
    ) -> tuple[FunctionConfig, bool]:
        """Create or replace; returns the stored row (revision bumped) and whether it was
        created. Creating in a namespace that does not exist raises NamespaceNotFoundError."""

    def delete_function(
        self, namespace: str, name: str, audit_entry: AuditEntry | None = None
    ) -> bool:
        """Delete; False when there was nothing to delete."""

    def code_hashes_in_use(self) -> set[str]:
        """Every code hash some function refers to (for garbage collection)."""

    def function_usage(self, namespace: str) -> tuple[int, int]:
        """(number of functions, sum of their code sizes) of a namespace."""

    # ---- namespaces ----
    def ensure_namespace(self, namespace: Namespace) -> bool:
        """Create it unless it exists; True when created."""

    def create_namespace(self, namespace: Namespace, audit_entry: AuditEntry | None = None) -> bool:
        """Create; False when the name is taken."""

    def get_namespace(self, name: str) -> Namespace | None:
        """The namespace, or None."""

    def list_namespaces(self) -> list[Namespace]:
        """Every namespace, by name."""

    def update_namespace(
        self, name: str, quotas: Quotas, audit_entry: AuditEntry | None = None
    ) -> Namespace | None:
        """Replace its quotas; None when it does not exist."""

    def delete_namespace(
        self, name: str, audit_entry: AuditEntry | None = None
    ) -> tuple[bool, int, int]:
        """Delete it if it holds no function and no live key: (deleted, functions, keys)."""

    # ---- keys ----
    def add_key(
        self, key: ApiKey, secret_hash: str, audit_entry: AuditEntry | None = None
    ) -> ApiKey:
        """Store a key under the hash of its secret; returns it with its creation time."""

    def find_key(self, secret_hash: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_hash``, unless revoked."""

    def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, unless revoked."""

    def list_keys(self, namespace: str | None) -> list[ApiKey]:
        """Live keys of one namespace (all when None)."""

    def revoke_key(self, key_id: str, audit_entry: AuditEntry | None = None) -> bool:
        """Revoke; False when there was no live key with this id."""

    def restore_key(self, secret_hash: str) -> bool:
        """Un-revoke the key with this secret hash; False when there is none."""

    def count_admin_keys(self) -> int:
        """Live admin keys."""

    # ---- audit ----
    def query_audit(
        self,
        *,
        namespace: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Audit entries matching every filter given, newest first."""

    def close(self) -> None:
        """Release connections."""
