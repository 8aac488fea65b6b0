"""API keys: who is calling, in which namespace, with which role."""

from __future__ import annotations

import enum
import hashlib
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime

KEY_PREFIX = "nmb_"
#: Access key ids (AWS Signature V4 credentials of a key) start with this.
ACCESS_KEY_PREFIX = "NIMB"
_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, in every namespace
    DEVELOPER = "developer"  # manage and invoke functions of its namespace
    INVOKER = "invoker"  # invoke only


@dataclass(frozen=True)
class ApiKey:
    id: str
    namespace: str
    role: Role
    name: str
    created_at: datetime | None = None


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Keys are long random strings, so one round of SHA-256 is enough to store them safely."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class AccessKey:
    """An API key's AWS Signature V4 credentials, for the Lambda-compatible API.

    The secret is needed to check signatures, so it is stored encrypted (not hashed);
    it is shown once, with the API key's own secret, and revoked with it."""

    id: str
    secret: str = field(repr=False)


def new_access_key() -> AccessKey:
    """``NIMB`` + 16 upper-case letters and digits, and a 40-character secret (as AWS's)."""
    key_id = ACCESS_KEY_PREFIX + "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(16))
    return AccessKey(key_id, secrets.token_urlsafe(30))
