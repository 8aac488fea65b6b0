"""Encryption at rest for secrets (functions' ``secret_env``): AES-256-GCM.

The key is 32 random bytes: ``NIMBUS_SECRET_KEY`` (base64) when set, else the
file ``<data_dir>/secret.key`` (base64), created with mode 0600 on first start.
Each value is sealed with a fresh 96-bit nonce and bound to its owner through
the associated data (``namespace/name``), so a sealed value copied onto another
function's row does not open there. Format: ``v1:`` + base64(nonce ‖ ciphertext ‖ tag).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nimbus.errors import InvalidSettingError, UnavailableError

log = logging.getLogger("nimbus.store")

KEY_BYTES = 32
NONCE_BYTES = 12
_PREFIX = "v1:"
KEY_FILE = "secret.key"


class SecretBox:
    """Seals and opens small secrets with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise InvalidSettingError(f"the secret key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return _PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, token: str, context: str) -> bytes:
        if not token.startswith(_PREFIX):
            raise UnavailableError(f"secret of {context} is stored in an unknown format")
        try:
            raw = base64.b64decode(token[len(_PREFIX) :], validate=True)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise UnavailableError(
                f"cannot decrypt the secrets of {context}: the secret key is not the one they "
                "were sealed with; start the server with the original NIMBUS_SECRET_KEY or "
                f"{KEY_FILE}"
            ) from exc


def decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSettingError(f"{where} is not valid base64 ({exc})") from exc
    if len(key) != KEY_BYTES:
        raise InvalidSettingError(
            f"{where} must decode to {KEY_BYTES} bytes, got {len(key)}; make one with "
            '`python -c "import os, base64; print(base64.b64encode(os.urandom(32)).decode())"`'
        )
    return key


def load_key(data_dir: Path, configured: str) -> bytes:
    """The configured key, else the one in ``<data_dir>/secret.key`` (made on first use)."""
    if configured:
        return decode_key(configured, "NIMBUS_SECRET_KEY")
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o); chmod 600 it", path, mode)
        return decode_key(path.read_text(encoding="ascii"), str(path))
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(base64.b64encode(key).decode("ascii") + "\n")
    log.info("created the secret key %s", path)
    return key
