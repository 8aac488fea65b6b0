"""Secrets at rest: AES-GCM sealing and the key file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from nimbus.errors import InvalidSettingError, UnavailableError
from nimbus.store.secretbox import KEY_FILE, SecretBox, load_key


def test_round_trip_and_fresh_nonces() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal(b'{"PASSWORD": "hunter2"}', "team/fn")
    assert sealed.startswith("v1:") and "hunter2" not in sealed
    assert box.open(sealed, "team/fn") == b'{"PASSWORD": "hunter2"}'
    assert box.seal(b"same", "ctx") != box.seal(b"same", "ctx")


def test_a_sealed_value_opens_only_for_its_owner_and_key() -> None:
    key = os.urandom(32)
    sealed = SecretBox(key).seal(b"value", "team/fn")
    with pytest.raises(UnavailableError, match="secret key"):
        SecretBox(key).open(sealed, "team/other")  # moved to another function's row
    with pytest.raises(UnavailableError, match="secret key"):
        SecretBox(os.urandom(32)).open(sealed, "team/fn")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(UnavailableError):
        SecretBox(key).open(tampered, "team/fn")


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    key = load_key(tmp_path, "")
    path = tmp_path / KEY_FILE
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(tmp_path, "") == key  # reused on the next start


def test_configured_key_wins_and_is_checked(tmp_path: Path) -> None:
    configured = os.urandom(32)
    assert load_key(tmp_path, base64.b64encode(configured).decode()) == configured
    assert not (tmp_path / KEY_FILE).exists()
    with pytest.raises(InvalidSettingError, match="32 bytes"):
        load_key(tmp_path, base64.b64encode(b"short").decode())
    with pytest.raises(InvalidSettingError, match="base64"):
        load_key(tmp_path, "not base64!")
