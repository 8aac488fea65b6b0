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
        #: Access key id → (its key, its secret), for AWS Signature V4.
        self._access: dict[str, tuple[ApiKey, str]] = {}
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

    async def access_key(self, access_key_id: str) -> tuple[ApiKey, str] | None:
        """The live key owning a SigV4 access key id, and the access key's secret (to check
        a signature with); cached like keys, forgotten with them."""
        found = self._access.get(access_key_id)
        if found is None:
            found = await asyncio.to_thread(self._store.find_access_key, access_key_id)
            if found is None or found[0].id in self._revoked:
                return None
            self._access[access_key_id] = found
        return found

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (it was revoked)."""
        self._revoked.add(key_id)
        for digest, key in list(self._cache.items()):
            if key.id == key_id:
                del self._cache[digest]
        for access_key_id, (key, _secret) in list(self._access.items()):
            if key.id == key_id:
                del self._access[access_key_id]
