"""Use cases on API keys: issue, list, revoke; and the admin key of a fresh server.

Secrets are shown once, when issued, and stored only as their SHA-256. Who
may issue or revoke what:

- an admin key: any key, in any namespace;
- a developer key: developer and invoker keys of its own namespace only
  (other namespaces answer as if they did not exist);
- an invoker key: nothing (the gateway refuses it with 403 first).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from nimbus.control.namespaces import NamespaceService
from nimbus.domain.access import DELEGABLE_BY_DEVELOPER
from nimbus.domain.audit import Actor, AuditAction, AuditEntry
from nimbus.domain.keys import (
    AccessKey,
    ApiKey,
    Role,
    hash_secret,
    new_access_key,
    new_secret,
)
from nimbus.domain.namespace import DEFAULT_NAMESPACE, namespace_not_found
from nimbus.errors import (
    ForbiddenError,
    InvalidSettingError,
    KeyNotFoundError,
    LastAdminKeyError,
)
from nimbus.store.base import Store

log = logging.getLogger("nimbus.keys")

MAX_KEY_NAME_CHARS = 128


def new_key_id() -> str:
    return uuid.uuid4().hex[:12]


def validate_key_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_KEY_NAME_CHARS or any(ord(c) < 32 for c in name):
        raise InvalidSettingError(
            f"key name must be 1-{MAX_KEY_NAME_CHARS} printable characters, e.g. 'ci-deploy'"
        )
    return name


def _key_not_found(key_id: str) -> KeyNotFoundError:
    return KeyNotFoundError(f"key {key_id!r} does not exist or is already revoked")


class KeyService:
    def __init__(
        self,
        *,
        store: Store,
        namespaces: NamespaceService,
        on_revoke: Callable[[str], None],
    ) -> None:
        self._store = store
        self._namespaces = namespaces
        self._on_revoke = on_revoke
        self._lock = asyncio.Lock()

    async def create(
        self, actor: ApiKey, namespace: str, role: Role, name: str
    ) -> tuple[ApiKey, str, AccessKey]:
        """Issue a key; returns it, its secret and its SigV4 access key (the only time the
        secrets are shown)."""
        name = validate_key_name(name)
        if actor.role is not Role.ADMIN:
            if namespace != actor.namespace:
                raise namespace_not_found(namespace)
            if role not in DELEGABLE_BY_DEVELOPER:
                raise ForbiddenError(
                    f"a {actor.role.value} key may create only developer and invoker keys of "
                    f"its own namespace, not {role.value} keys; ask an admin"
                )
        self._namespaces.get(namespace)
        secret = new_secret()
        access_key = new_access_key()
        key = ApiKey(new_key_id(), namespace, role, name)
        entry = AuditEntry(
            Actor.of(actor),
            namespace,
            AuditAction.KEY_CREATE,
            key.id,
            {"role": role.value, "name": name},
        )
        stored = await asyncio.to_thread(
            self._store.add_key, key, hash_secret(secret), entry, access_key
        )
        return stored, secret, access_key

    async def list(self, namespace: str | None) -> list[ApiKey]:
        return await asyncio.to_thread(self._store.list_keys, namespace)

    async def revoke(self, actor: ApiKey, key_id: str) -> ApiKey:
        """Revoke a key; it is refused at once (the verification cache forgets it)."""
        async with self._lock:
            key = await asyncio.to_thread(self._store.get_key, key_id)
            if key is None or (actor.role is not Role.ADMIN and key.namespace != actor.namespace):
                raise _key_not_found(key_id)
            if actor.role is not Role.ADMIN and key.role not in DELEGABLE_BY_DEVELOPER:
                raise ForbiddenError(
                    f"a {actor.role.value} key may revoke only developer and invoker keys; "
                    "ask an admin"
                )
            if (
                key.role is Role.ADMIN
                and await asyncio.to_thread(self._store.count_admin_keys) <= 1
            ):
                raise LastAdminKeyError(
                    f"key {key_id!r} is the last admin key; create another admin key first "
                    "(`nimbus key create --role admin --name NAME`)"
                )
            entry = AuditEntry(
                Actor.of(actor),
                key.namespace,
                AuditAction.KEY_REVOKE,
                key.id,
                {"role": key.role.value, "name": key.name},
            )
            if not await asyncio.to_thread(self._store.revoke_key, key_id, entry):
                raise _key_not_found(key_id)
        self._on_revoke(key_id)
        return key

    def ensure_admin(self, preset: str) -> str | None:
        """Make sure an admin key exists. Returns a newly generated secret (to print once).

        A preset key (``NIMBUS_ADMIN_TOKEN``) is created, or reinstated if it was revoked:
        the operator's configuration says it is the admin key.
        """
        if preset:
            digest = hash_secret(preset)
            if self._store.find_key(digest) is None:
                if self._store.restore_key(digest):
                    log.warning("NIMBUS_ADMIN_TOKEN had been revoked; it is reinstated")
                else:
                    self._store.add_key(
                        ApiKey(
                            new_key_id(),
                            DEFAULT_NAMESPACE,
                            Role.ADMIN,
                            "admin (NIMBUS_ADMIN_TOKEN)",
                        ),
                        digest,
                    )
            return None
        if self._store.count_admin_keys() > 0:
            return None
        secret = new_secret()
        self._store.add_key(
            ApiKey(new_key_id(), DEFAULT_NAMESPACE, Role.ADMIN, "admin"), hash_secret(secret)
        )
        return secret
