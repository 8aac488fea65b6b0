"""Metadata in SQLite (WAL mode) through SQLAlchemy Core."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nimbus.domain.function import FunctionConfig
from nimbus.domain.keys import ApiKey, Role

SCHEMA_VERSION = 1

metadata = sa.MetaData()

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("namespace", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("handler", sa.String(256), nullable=False),
    sa.Column("code_sha256", sa.String(64), nullable=False),
    sa.Column("code_size", sa.Integer, nullable=False),
    sa.Column("memory_mb", sa.Integer, nullable=False),
    sa.Column("timeout_s", sa.Integer, nullable=False),
    sa.Column("env", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("max_instances", sa.Integer, nullable=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("namespace", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

schema_info = sa.Table(
    "schema_info",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
)


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(path: Path) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}", future=True)
    sa.event.listen(engine, "connect", _on_connect)
    return engine


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._engine = make_engine(path)
        metadata.create_all(self._engine)
        with self._engine.begin() as conn:
            if conn.execute(sa.select(schema_info.c.version)).first() is None:
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))

    @staticmethod
    def _row_to_function(row: Any) -> FunctionConfig:
        return FunctionConfig(
            namespace=row.namespace,
            name=row.name,
            runtime=row.runtime,
            handler=row.handler,
            code_sha256=row.code_sha256,
            code_size=row.code_size,
            memory_mb=row.memory_mb,
            timeout_s=row.timeout_s,
            env=json.loads(row.env),
            description=row.description,
            max_instances=row.max_instances,
            revision=row.revision,
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )

    def get_function(self, namespace: str, name: str) -> FunctionConfig | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(functions).where(
                    functions.c.namespace == namespace, functions.c.name == name
                )
            ).first()
        return self._row_to_function(row) if row else None

    def list_functions(self, namespace: str | None) -> list[FunctionConfig]:
        query = sa.select(functions).order_by(functions.c.namespace, functions.c.name)
        if namespace is not None:
            query = query.where(functions.c.namespace == namespace)
        with self._engine.connect() as conn:
            return [self._row_to_function(r) for r in conn.execute(query)]

    def save_function(self, config: FunctionConfig) -> tuple[FunctionConfig, bool]:
        now = datetime.now(UTC)
        values = {
            "runtime": config.runtime,
            "handler": config.handler,
            "code_sha256": config.code_sha256,
            "code_size": config.code_size,
            "memory_mb": config.memory_mb,
            "timeout_s": config.timeout_s,
            "env": json.dumps(config.env, sort_keys=True),
            "description": config.description,
            "max_instances": config.max_instances,
            "updated_at": now,
        }
        where = (functions.c.namespace == config.namespace) & (functions.c.name == config.name)
        with self._engine.begin() as conn:
            current = conn.execute(
                sa.select(functions.c.revision, functions.c.created_at).where(where)
            ).first()
            if current is None:
                conn.execute(
                    functions.insert().values(
                        namespace=config.namespace,
                        name=config.name,
                        revision=1,
                        created_at=now,
                        **values,
                    )
                )
                created = True
            else:
                conn.execute(
                    functions.update().where(where).values(revision=current.revision + 1, **values)
                )
                created = False
            row = conn.execute(sa.select(functions).where(where)).one()
        return self._row_to_function(row), created

    def delete_function(self, namespace: str, name: str) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(
                functions.delete().where(
                    functions.c.namespace == namespace, functions.c.name == name
                )
            )
        return bool(result.rowcount)

    def code_hashes_in_use(self) -> set[str]:
        with self._engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(functions.c.code_sha256).distinct())}

    def add_key(self, key: ApiKey, secret_hash: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    secret_hash=secret_hash,
                    namespace=key.namespace,
                    role=key.role.value,
                    name=key.name,
                    created_at=key.created_at or datetime.now(UTC),
                )
            )

    def find_key(self, secret_hash: str) -> ApiKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys).where(
                    api_keys.c.secret_hash == secret_hash, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        if row is None:
            return None
        return ApiKey(
            id=row.id,
            namespace=row.namespace,
            role=Role(row.role),
            name=row.name,
            created_at=_utc(row.created_at),
        )

    def has_admin_key(self) -> bool:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys.c.id).where(
                    api_keys.c.role == Role.ADMIN.value, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        return row is not None

    def close(self) -> None:
        self._engine.dispose()
