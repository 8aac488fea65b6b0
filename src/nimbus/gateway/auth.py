"""API keys: ``Authorization: Bearer <key>`` → the caller's :class:`ApiKey`."""

from __future__ import annotations

import asyncio

from nimbus.domain.keys import ApiKey, hash_secret
from nimbus.errors import AuthError
from nimbus.store.base import Store


class KeyRing:
    """Verifies keys; verified keys are cached by hash so the hot path skips the database.

    A revoked key must be :meth:`forget`-ed so it is refused at once.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, ApiKey] = {}
        # Ids revoked while this process runs: a lookup that raced a revoke is not cached.
        self._revoked: set[str] = set()

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
            if key is None or key.id in self._revoked:
                raise AuthError("invalid API key; check NIMBUS_TOKEN or run `nimbus login`")
            self._cache[digest] = key
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (it was revoked)."""
        self._revoked.add(key_id)
        for digest, key in list(self._cache.items()):
            if key.id == key_id:
                del self._cache[digest]
