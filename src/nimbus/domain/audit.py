"""The audit trail: one entry per management action that changed something."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nimbus.domain.keys import ApiKey


class AuditAction(enum.StrEnum):
    FUNCTION_CREATE = "function.create"  # a function was created (PUT of a new name)
    FUNCTION_UPDATE = "function.update"  # its configuration or code changed
    FUNCTION_DELETE = "function.delete"  # it was deleted
    VERSION_PUBLISH = "version.publish"  # $LATEST was published as a new version
    VERSION_DELETE = "version.delete"  # a version was deleted
    ALIAS_PUT = "alias.put"  # an alias was created or moved
    ALIAS_DELETE = "alias.delete"  # an alias was deleted
    CONCURRENCY_SET = "concurrency.set"  # reserved concurrency set or removed
    PROVISIONED_SET = "provisioned.set"  # provisioned instances set or removed
    TRIGGER_CREATE = "trigger.create"  # a trigger was created
    TRIGGER_UPDATE = "trigger.update"  # enabled or disabled
    TRIGGER_DELETE = "trigger.delete"  # deleted
    KEY_CREATE = "key.create"  # an API key was issued
    KEY_REVOKE = "key.revoke"  # an API key was revoked
    NAMESPACE_CREATE = "namespace.create"  # a namespace was created
    NAMESPACE_UPDATE = "namespace.update"  # its quotas changed
    NAMESPACE_DELETE = "namespace.delete"  # it was deleted


@dataclass(frozen=True)
class Actor:
    """The key that acted (copied, so the entry outlives the key)."""

    key_id: str
    key_name: str
    role: str

    @classmethod
    def of(cls, key: ApiKey) -> Actor:
        return cls(key.id, key.name, key.role.value)


@dataclass(frozen=True)
class AuditEntry:
    """What to record. ``details`` must never hold a secret."""

    actor: Actor
    namespace: str
    action: AuditAction
    target: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def by(
        cls, actor: Actor | None, namespace: str, action: AuditAction, target: str
    ) -> AuditEntry | None:
        """The entry for a change made by ``actor``; None when the platform itself acts."""
        return cls(actor, namespace, action, target) if actor is not None else None


@dataclass(frozen=True)
class AuditRecord:
    """A stored entry."""

    id: int
    ts: datetime
    key_id: str
    key_name: str
    role: str
    namespace: str
    action: str
    target: str
    details: dict[str, Any]
