"""The SQLite store's tenancy parts: migration from schema 1, secrets at rest, audit rows."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from nimbus.domain.audit import Actor, AuditAction, AuditEntry
from nimbus.domain.function import FunctionConfig
from nimbus.domain.keys import ApiKey, Role
from nimbus.domain.namespace import Namespace, Quotas
from nimbus.errors import NamespaceNotFoundError
from nimbus.store.secretbox import SecretBox
from nimbus.store.sqlite import SCHEMA_VERSION, SqliteStore

ACTOR = Actor("k1", "ci", "developer")


def _config(**kw: object) -> FunctionConfig:
    values: dict[str, object] = {
        "namespace": "team",
        "name": "fn",
        "runtime": "python3.11",
        "handler": "app.handler",
        "code_sha256": "ab" * 32,
        "code_size": 10,
    }
    values.update(kw)
    return FunctionConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "nimbus.db", SecretBox(os.urandom(32)))
    s.ensure_namespace(Namespace("team", Quotas(max_functions=3)))
    return s


def test_secret_env_is_sealed_in_its_column(store: SqliteStore, tmp_path: Path) -> None:
    stored, created = store.save_function(_config(secret_env={"PASSWORD": "hunter2-xyz"}))
    assert created and stored.secret_env == {"PASSWORD": "hunter2-xyz"}
    assert "hunter2" not in repr(stored)
    assert store.get_function("team", "fn") == stored
    with sqlite3.connect(tmp_path / "nimbus.db") as db:
        (raw,) = db.execute("SELECT secret_env FROM functions").fetchone()
    assert raw.startswith("v1:") and "hunter2" not in raw
    store.close()


def test_creating_in_a_missing_namespace_is_refused(store: SqliteStore) -> None:
    with pytest.raises(NamespaceNotFoundError):
        store.save_function(_config(namespace="nowhere"))
    store.close()


def test_audit_rows_go_with_the_change(store: SqliteStore) -> None:
    entry = AuditEntry(ACTOR, "team", AuditAction.FUNCTION_CREATE, "fn", {"changed": ["x"]})
    store.save_function(_config(), entry)
    assert not store.delete_function("team", "missing", entry)  # nothing changed: no row
    (record,) = store.query_audit(namespace="team")
    assert record.action == "function.create" and record.key_id == "k1"
    assert record.details == {"changed": ["x"], "revision": 1}
    store.close()


def test_namespace_delete_refused_while_it_holds_functions_or_keys(store: SqliteStore) -> None:
    store.save_function(_config())
    assert store.delete_namespace("team") == (False, 1, 0)
    store.delete_function("team", "fn")
    store.add_key(ApiKey("k2", "team", Role.INVOKER, "x"), "h" * 64)
    assert store.delete_namespace("team") == (False, 0, 1)
    assert store.revoke_key("k2")
    assert store.delete_namespace("team") == (True, 0, 0)
    assert store.get_namespace("team") is None
    store.close()


def test_schema_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE functions (namespace VARCHAR(64), name VARCHAR(64), runtime VARCHAR(32)
              NOT NULL, handler VARCHAR(256) NOT NULL, code_sha256 VARCHAR(64) NOT NULL,
              code_size INTEGER NOT NULL, memory_mb INTEGER NOT NULL, timeout_s INTEGER NOT NULL,
              env TEXT NOT NULL, description TEXT NOT NULL, max_instances INTEGER, revision
              INTEGER NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
              PRIMARY KEY (namespace, name));
            CREATE TABLE schema_info (version INTEGER PRIMARY KEY);
            INSERT INTO schema_info VALUES (1);
            INSERT INTO functions VALUES ('default', 'old', 'python3.11', 'app.handler',
              'abab', 5, 128, 3, '{}', '', NULL, 4, '2024-01-01 00:00:00.000000',
              '2024-01-01 00:00:00.000000');
            """
        )
    store = SqliteStore(path, SecretBox(os.urandom(32)))
    old = store.get_function("default", "old")
    assert old is not None and old.revision == 4 and old.secret_env == {}
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_info").fetchall() == [(SCHEMA_VERSION,)]
