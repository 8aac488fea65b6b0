"""Who may do what, where: roles, permissions and the namespace a call acts in.

Pure rules; the gateway applies them to each request.

    role        namespaces        may
    admin       every one         everything
    developer   its own           invoke, read, manage functions, manage non-admin keys
    invoker     its own           invoke
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nimbus.domain.keys import ApiKey, Role
from nimbus.domain.namespace import DEFAULT_NAMESPACE
from nimbus.errors import ForbiddenError


class Permission(enum.StrEnum):
    INVOKE = "invoke"  # run functions
    READ = "read"  # list and show functions, read logs, see its namespace
    MANAGE = "manage"  # upload code; create, change and delete functions
    KEYS = "keys"  # create, list and revoke keys of the namespace
    ADMIN = "admin"  # namespaces, the audit trail, every namespace


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.DEVELOPER: frozenset(
        {Permission.INVOKE, Permission.READ, Permission.MANAGE, Permission.KEYS}
    ),
    Role.INVOKER: frozenset({Permission.INVOKE}),
}

#: Roles a developer key may hand out (and revoke) in its own namespace.
DELEGABLE_BY_DEVELOPER = frozenset({Role.DEVELOPER, Role.INVOKER})

_REFUSALS: dict[Permission, str] = {
    Permission.READ: "read functions, logs or namespace details",
    Permission.MANAGE: "upload code or change functions",
    Permission.KEYS: "manage API keys",
    Permission.ADMIN: "do this: it needs an admin key",
}


@dataclass(frozen=True)
class Placement:
    """The namespace a call acts in, and whether the caller may see it at all."""

    namespace: str
    visible: bool


def place(key: ApiKey, requested: str | None) -> Placement:
    """Admin keys act where they ask (default: ``default``); other keys only in their own.

    A non-admin key that names another namespace gets ``visible=False``: the
    caller answers as if nothing were there, revealing nothing about it.
    """
    if key.role is Role.ADMIN:
        return Placement(requested or DEFAULT_NAMESPACE, True)
    if requested is None or requested == key.namespace:
        return Placement(key.namespace, True)
    return Placement(requested, False)


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def require(key: ApiKey, permission: Permission) -> None:
    """Raise 403 ``Auth.Forbidden`` when the key's role lacks ``permission``."""
    if not allows(key.role, permission):
        raise ForbiddenError(
            f"this {key.role.value} key (namespace {key.namespace!r}) may not "
            f"{_REFUSALS.get(permission, permission.value)}"
            + ("; invoker keys may only invoke functions" if key.role is Role.INVOKER else ""),
            role=key.role.value,
            needs=permission.value,
        )
