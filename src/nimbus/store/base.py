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
from nimbus.domain.keys import AccessKey, ApiKey
from nimbus.domain.namespace import Namespace, Quotas
from nimbus.domain.trigger import Trigger
from nimbus.domain.version import Alias


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

    def set_reserved_concurrency(
        self, namespace: str, name: str, value: int | None, audit_entry: AuditEntry | None = None
    ) -> FunctionConfig:
        """Set or clear (None) the function's reserved concurrency; no new revision."""

    # ---- versions and aliases ----
    def publish_version(
        self,
        namespace: str,
        name: str,
        description: str | None,
        audit_entry: AuditEntry | None = None,
    ) -> tuple[FunctionConfig, bool]:
        """Snapshot $LATEST as the next version number, or return the version that has
        the same settings (False: nothing new was published)."""

    def get_version(self, namespace: str, name: str, number: int) -> FunctionConfig | None:
        """The version's configuration (``version`` set to its number), or None."""

    def list_versions(self, namespace: str, name: str) -> list[FunctionConfig]:
        """Published versions, oldest first."""

    def delete_version(
        self, namespace: str, name: str, number: int, audit_entry: AuditEntry | None = None
    ) -> None:
        """Delete; VersionInUseError while an alias or provisioned instances use it."""

    def put_alias(self, alias: Alias, audit_entry: AuditEntry | None = None) -> tuple[Alias, bool]:
        """Create or move an alias atomically; VersionNotFoundError for a missing version."""

    def get_alias(self, namespace: str, name: str, alias: str) -> Alias | None:
        """The alias, or None."""

    def list_aliases(self, namespace: str, name: str) -> list[Alias]:
        """Aliases of a function, by name."""

    def delete_alias(
        self, namespace: str, name: str, alias: str, audit_entry: AuditEntry | None = None
    ) -> bool:
        """Delete it (and provisioned instances set on it); False when it did not exist."""

    # ---- triggers ----
    def create_trigger(self, trigger: Trigger, audit_entry: AuditEntry | None = None) -> Trigger:
        """Store a new trigger; TriggerExistsError / FunctionNotFoundError."""

    def list_triggers(
        self, namespace: str | None = None, function: str | None = None
    ) -> list[Trigger]:
        """Triggers, by namespace, function and name."""

    def set_trigger_enabled(
        self,
        namespace: str,
        function: str,
        name: str,
        enabled: bool,
        audit_entry: AuditEntry | None = None,
    ) -> Trigger | None:
        """Enable or disable; None when there is no such trigger."""

    def delete_trigger(
        self, namespace: str, function: str, name: str, audit_entry: AuditEntry | None = None
    ) -> bool:
        """Delete; False when there was nothing to delete."""

    def set_trigger_fired(self, namespace: str, function: str, name: str, tick: datetime) -> None:
        """Remember the newest tick a timer fired (never moves backwards)."""

    def set_provisioned(
        self,
        namespace: str,
        name: str,
        qualifier: str,
        count: int,
        audit_entry: AuditEntry | None = None,
    ) -> None:
        """Provisioned instances for a version or alias; 0 removes the setting."""

    def list_provisioned(
        self, namespace: str | None = None, name: str | None = None
    ) -> list[tuple[str, str, str, int]]:
        """(namespace, function, qualifier, count) of provisioned settings."""

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
        self,
        key: ApiKey,
        secret_hash: str,
        audit_entry: AuditEntry | None = None,
        access_key: AccessKey | None = None,
    ) -> ApiKey:
        """Store a key under the hash of its secret, with its SigV4 ``access_key`` (the
        secret sealed) in the same transaction; returns it with its creation time."""

    def find_key(self, secret_hash: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_hash``, unless revoked."""

    def find_access_key(self, access_key_id: str) -> tuple[ApiKey, str] | None:
        """The live key owning this access key id, and the access key's secret."""

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
