"""API keys: who is calling, in which namespace, with which role."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

KEY_PREFIX = "nmb_"


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
