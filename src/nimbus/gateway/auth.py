"""API keys: ``Authorization: Bearer <key>`` → the caller's :class:`ApiKey`."""

from __future__ import annotations

import asyncio
import uuid

from nimbus.domain.keys import ApiKey, Role, hash_secret, new_secret
from nimbus.errors import AuthError
from nimbus.store.sqlite import SqliteStore


class KeyRing:
    """Verifies keys; verified keys are cached by hash so the hot path skips the database."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._cache: dict[str, ApiKey] = {}

    async def authenticate(self, authorization: str | None) -> ApiKey:
        if not authorization:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError("malformed Authorization header: use 'Authorization: Bearer <key>'")
        digest = hash_secret(secret.strip())
        key = self._cache.get(digest)
        if key is None:
            key = await asyncio.to_thread(self._store.find_key, digest)
            if key is None:
                raise AuthError("invalid API key; check NIMBUS_TOKEN or run `nimbus login`")
            self._cache[digest] = key
        return key

    def ensure_admin(self, preset: str) -> str | None:
        """Make sure an admin key exists. Returns a newly generated secret (to print once)."""
        if preset:
            if self._store.find_key(hash_secret(preset)) is None:
                self._store.add_key(
                    ApiKey(
                        uuid.uuid4().hex[:12], "default", Role.ADMIN, "admin (NIMBUS_ADMIN_TOKEN)"
                    ),
                    hash_secret(preset),
                )
            return None
        if self._store.has_admin_key():
            return None
        secret = new_secret()
        self._store.add_key(
            ApiKey(uuid.uuid4().hex[:12], "default", Role.ADMIN, "admin"), hash_secret(secret)
        )
        return secret
