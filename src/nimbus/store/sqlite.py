"""Metadata in SQLite (WAL mode) through SQLAlchemy Core.

Writes that change something a user manages take an optional
:class:`AuditEntry`, recorded in the same transaction as the change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from nimbus.domain.audit import AuditEntry, AuditRecord
from nimbus.domain.function import FunctionConfig
from nimbus.domain.keys import AccessKey, ApiKey, Role
from nimbus.domain.namespace import Namespace, Quotas
from nimbus.domain.trigger import Trigger
from nimbus.domain.version import SNAPSHOT_FIELDS, Alias, snapshot_digest
from nimbus.errors import (
    FunctionNotFoundError,
    NamespaceNotFoundError,
    TriggerExistsError,
    VersionInUseError,
    VersionNotFoundError,
)
from nimbus.store.secretbox import SecretBox

#: 1: functions, api_keys. 2: functions.secret_env, namespaces, audit. 3: functions.network.
#: 4: versions, aliases, provisioned, functions.reserved_concurrency. 5: functions.async_config.
SCHEMA_VERSION = 5

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
    # Sealed by SecretBox ("" when there are none); never stored in clear.
    sa.Column("secret_env", sa.Text, nullable=False, server_default=""),
    sa.Column("network", sa.String(16), nullable=False, server_default="none"),
    sa.Column("reserved_concurrency", sa.Integer, nullable=True),
    # JSON: async_max_attempts, async_max_age_s, on_success, on_failure ({} = defaults).
    sa.Column("async_config", sa.Text, nullable=False, server_default="{}"),
)

#: Published versions: frozen settings (secret_env sealed as in functions).
versions = sa.Table(
    "versions",
    metadata,
    sa.Column("namespace", sa.String(64), primary_key=True),
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("settings", sa.Text, nullable=False),  # JSON of the snapshot, secrets excepted
    sa.Column("secret_env", sa.Text, nullable=False, server_default=""),
    sa.Column("code_size", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("namespace", sa.String(64), primary_key=True),
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("weights", sa.Text, nullable=False),  # JSON {"4": 0.1}
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("namespace", sa.String(64), primary_key=True),
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("qualifier", sa.String(128), nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("last_fired", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: Instances kept initialised for a version or an alias.
provisioned = sa.Table(
    "provisioned",
    metadata,
    sa.Column("namespace", sa.String(64), primary_key=True),
    sa.Column("function", sa.String(64), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
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

#: AWS Signature V4 credentials of API keys (the Lambda-compatible API). The secret is
#: sealed by SecretBox: checking a signature needs it, so it cannot be hashed. A key made
#: before this table existed has none. Live while its API key is.
access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("secret", sa.Text, nullable=False),
)

namespaces = sa.Table(
    "namespaces",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("max_functions", sa.Integer, nullable=True),
    sa.Column("max_code_bytes", sa.BigInteger, nullable=True),
    sa.Column("max_concurrent_instances", sa.Integer, nullable=True),
    sa.Column("max_requests_per_s", sa.Float, nullable=True),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("key_name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("namespace", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
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


def _migrate(conn: Connection) -> None:
    """Bring an older database to ``SCHEMA_VERSION`` (tables are created by create_all)."""
    row = conn.execute(sa.select(sa.func.max(schema_info.c.version))).first()
    version = row[0] if row is not None else None
    if version is None:
        conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
        return
    if version < 2:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("functions")}
        if "secret_env" not in columns:
            conn.execute(
                sa.text("ALTER TABLE functions ADD COLUMN secret_env TEXT NOT NULL DEFAULT ''")
            )
    if version < 3:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("functions")}
        if "network" not in columns:
            conn.execute(
                sa.text(
                    "ALTER TABLE functions ADD COLUMN network VARCHAR(16) NOT NULL DEFAULT 'none'"
                )
            )
    if version < 4:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("functions")}
        if "reserved_concurrency" not in columns:
            conn.execute(sa.text("ALTER TABLE functions ADD COLUMN reserved_concurrency INTEGER"))
    if version < 5:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("functions")}
        if "async_config" not in columns:
            conn.execute(
                sa.text("ALTER TABLE functions ADD COLUMN async_config TEXT NOT NULL DEFAULT '{}'")
            )
    if version < SCHEMA_VERSION:
        conn.execute(schema_info.delete())
        conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        namespace=row.namespace,
        role=Role(row.role),
        name=row.name,
        created_at=_utc(row.created_at),
    )


def _namespace(row: Any) -> Namespace:
    return Namespace(
        name=row.name,
        quotas=Quotas(
            max_functions=row.max_functions,
            max_code_bytes=row.max_code_bytes,
            max_concurrent_instances=row.max_concurrent_instances,
            max_requests_per_s=row.max_requests_per_s,
        ),
        created_at=_utc(row.created_at),
    )


def _alias(row: Any) -> Alias:
    return Alias(
        namespace=row.namespace,
        function=row.function,
        name=row.name,
        version=row.version,
        weights={int(k): float(v) for k, v in json.loads(row.weights).items()},
        description=row.description,
        revision=row.revision,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def _trigger(row: Any) -> Trigger:
    return Trigger(
        namespace=row.namespace,
        function=row.function,
        name=row.name,
        type=row.type,
        qualifier=row.qualifier,
        enabled=bool(row.enabled),
        config=json.loads(row.config),
        last_fired=_utc(row.last_fired),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def _record(conn: Connection, entry: AuditEntry | None, **more: Any) -> None:
    if entry is None:
        return
    conn.execute(
        audit.insert().values(
            ts=datetime.now(UTC),
            key_id=entry.actor.key_id,
            key_name=entry.actor.key_name,
            role=entry.actor.role,
            namespace=entry.namespace,
            action=entry.action.value,
            target=entry.target,
            details=json.dumps({**entry.details, **more}, sort_keys=True),
        )
    )


class SqliteStore:
    def __init__(self, path: Path, secrets: SecretBox) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._secrets = secrets
        self._engine = make_engine(path)
        metadata.create_all(self._engine)
        with self._engine.begin() as conn:
            _migrate(conn)

    # ---- functions ---------------------------------------------------------
    def _row_to_function(self, row: Any) -> FunctionConfig:
        secret_env: dict[str, str] = {}
        if row.secret_env:
            where = f"{row.namespace}/{row.name}"
            secret_env = json.loads(self._secrets.open(row.secret_env, where))
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
            secret_env=secret_env,
            network=row.network,
            reserved_concurrency=row.reserved_concurrency,
            revision=row.revision,
            **json.loads(row.async_config or "{}"),
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )

    def _seal_env(self, config: FunctionConfig) -> str:
        if not config.secret_env:
            return ""
        plain = json.dumps(config.secret_env, sort_keys=True).encode()
        return self._secrets.seal(plain, f"{config.namespace}/{config.name}")

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

    def save_function(
        self, config: FunctionConfig, audit_entry: AuditEntry | None = None
    ) -> tuple[FunctionConfig, bool]:
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
            "secret_env": self._seal_env(config),
            "network": config.network,
            "async_config": json.dumps(
                {
                    "async_max_attempts": config.async_max_attempts,
                    "async_max_age_s": config.async_max_age_s,
                    "on_success": config.on_success,
                    "on_failure": config.on_failure,
                },
                sort_keys=True,
            ),
            "updated_at": now,
        }
        where = (functions.c.namespace == config.namespace) & (functions.c.name == config.name)
        with self._engine.begin() as conn:
            current = conn.execute(
                sa.select(functions.c.revision, functions.c.created_at).where(where)
            ).first()
            if current is None:
                exists = conn.execute(
                    sa.select(namespaces.c.name).where(namespaces.c.name == config.namespace)
                ).first()
                if exists is None:
                    raise NamespaceNotFoundError(f"namespace {config.namespace!r} does not exist")
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
            _record(conn, audit_entry, revision=row.revision)
        return self._row_to_function(row), created

    def delete_function(
        self, namespace: str, name: str, audit_entry: AuditEntry | None = None
    ) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(
                functions.delete().where(
                    functions.c.namespace == namespace, functions.c.name == name
                )
            )
            if result.rowcount:
                for table in (versions, aliases, provisioned, triggers):
                    conn.execute(
                        table.delete().where(
                            table.c.namespace == namespace, table.c.function == name
                        )
                    )
                _record(conn, audit_entry)
        return bool(result.rowcount)

    def code_hashes_in_use(self) -> set[str]:
        with self._engine.connect() as conn:
            used = {r[0] for r in conn.execute(sa.select(functions.c.code_sha256).distinct())}
            for (settings,) in conn.execute(sa.select(versions.c.settings)):
                used.add(json.loads(settings)["code_sha256"])
        return used

    # ---- reserved concurrency ----------------------------------------------------
    def set_reserved_concurrency(
        self, namespace: str, name: str, value: int | None, audit_entry: AuditEntry | None = None
    ) -> FunctionConfig:
        """Not a change of the function's settings: no new revision, no new instances."""
        where = (functions.c.namespace == namespace) & (functions.c.name == name)
        with self._engine.begin() as conn:
            result = conn.execute(
                functions.update().where(where).values(reserved_concurrency=value)
            )
            if not result.rowcount:
                raise FunctionNotFoundError(f"function {name!r} does not exist")
            _record(conn, audit_entry)
            row = conn.execute(sa.select(functions).where(where)).one()
        return self._row_to_function(row)

    # ---- versions ----------------------------------------------------------------
    def _row_to_version(self, head: FunctionConfig, row: Any) -> FunctionConfig:
        values = json.loads(row.settings)
        secret_env: dict[str, str] = {}
        if row.secret_env:
            where = f"{row.namespace}/{row.function}"
            secret_env = json.loads(self._secrets.open(row.secret_env, where))
        return FunctionConfig(
            namespace=row.namespace,
            name=row.function,
            code_size=row.code_size,
            secret_env=secret_env,
            reserved_concurrency=head.reserved_concurrency,
            revision=head.revision,
            created_at=_utc(row.created_at),
            updated_at=_utc(row.created_at),
            version=str(row.number),
            **values,
        )

    def publish_version(
        self,
        namespace: str,
        name: str,
        description: str | None,
        audit_entry: AuditEntry | None = None,
    ) -> tuple[FunctionConfig, bool]:
        """Snapshot $LATEST as the next version, unless a version has its settings."""
        where = (functions.c.namespace == namespace) & (functions.c.name == name)
        of_function = (versions.c.namespace == namespace) & (versions.c.function == name)
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(functions).where(where)).first()
            if row is None:
                raise FunctionNotFoundError(f"function {name!r} does not exist")
            head = self._row_to_function(row)
            digest = snapshot_digest(head)
            same = conn.execute(
                sa.select(versions).where(of_function, versions.c.digest == digest)
            ).first()
            if same is not None:
                return self._row_to_version(head, same), False
            last = conn.execute(sa.select(sa.func.max(versions.c.number)).where(of_function))
            number = (last.scalar() or 0) + 1
            values = {f: getattr(head, f) for f in SNAPSHOT_FIELDS if f != "secret_env"}
            if description is not None:
                values["description"] = description
            conn.execute(
                versions.insert().values(
                    namespace=namespace,
                    function=name,
                    number=number,
                    digest=digest,
                    settings=json.dumps(values, sort_keys=True),
                    secret_env=self._seal_env(head),
                    code_size=head.code_size,
                    created_at=datetime.now(UTC),
                )
            )
            _record(conn, audit_entry, version=number)
            stored = conn.execute(
                sa.select(versions).where(of_function, versions.c.number == number)
            ).one()
        return self._row_to_version(head, stored), True

    def get_version(self, namespace: str, name: str, number: int) -> FunctionConfig | None:
        head = self.get_function(namespace, name)
        if head is None:
            return None
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(versions).where(
                    versions.c.namespace == namespace,
                    versions.c.function == name,
                    versions.c.number == number,
                )
            ).first()
        return self._row_to_version(head, row) if row is not None else None

    def list_versions(self, namespace: str, name: str) -> list[FunctionConfig]:
        head = self.get_function(namespace, name)
        if head is None:
            raise FunctionNotFoundError(f"function {name!r} does not exist")
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(versions)
                .where(versions.c.namespace == namespace, versions.c.function == name)
                .order_by(versions.c.number)
            ).all()
        return [self._row_to_version(head, r) for r in rows]

    def delete_version(
        self, namespace: str, name: str, number: int, audit_entry: AuditEntry | None = None
    ) -> None:
        of_function = (versions.c.namespace == namespace) & (versions.c.function == name)
        with self._engine.begin() as conn:
            for row in conn.execute(
                sa.select(aliases).where(
                    aliases.c.namespace == namespace, aliases.c.function == name
                )
            ):
                alias = _alias(row)
                if number in alias.versions():
                    raise VersionInUseError(
                        f"alias {alias.name!r} points to version {number}; move or delete "
                        "the alias first"
                    )
            pinned = conn.execute(
                sa.select(provisioned.c.qualifier).where(
                    provisioned.c.namespace == namespace,
                    provisioned.c.function == name,
                    provisioned.c.qualifier == str(number),
                )
            ).first()
            if pinned is not None:
                raise VersionInUseError(
                    f"version {number} has provisioned instances; remove them first"
                )
            result = conn.execute(versions.delete().where(of_function, versions.c.number == number))
            if not result.rowcount:
                raise VersionNotFoundError(f"function {name!r} has no version {number}")
            _record(conn, audit_entry)

    # ---- aliases -----------------------------------------------------------------
    def put_alias(self, alias: Alias, audit_entry: AuditEntry | None = None) -> tuple[Alias, bool]:
        """Create or move an alias, in one transaction with the check that its
        versions exist (a concurrent version delete cannot leave it dangling)."""
        key = (
            (aliases.c.namespace == alias.namespace)
            & (aliases.c.function == alias.function)
            & (aliases.c.name == alias.name)
        )
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            for number in alias.versions():
                found = conn.execute(
                    sa.select(versions.c.number).where(
                        versions.c.namespace == alias.namespace,
                        versions.c.function == alias.function,
                        versions.c.number == number,
                    )
                ).first()
                if found is None:
                    raise VersionNotFoundError(
                        f"function {alias.function!r} has no version {number}; publish one "
                        f"with `nimbus publish {alias.function}`"
                    )
            values = {
                "version": alias.version,
                "weights": json.dumps({str(k): v for k, v in alias.weights.items()}),
                "description": alias.description,
                "updated_at": now,
            }
            current = conn.execute(sa.select(aliases.c.revision).where(key)).first()
            if current is None:
                conn.execute(
                    aliases.insert().values(
                        namespace=alias.namespace,
                        function=alias.function,
                        name=alias.name,
                        revision=1,
                        created_at=now,
                        **values,
                    )
                )
            else:
                conn.execute(aliases.update().where(key).values(revision=current[0] + 1, **values))
            _record(conn, audit_entry, version=alias.version, weights=values["weights"])
            row = conn.execute(sa.select(aliases).where(key)).one()
        return _alias(row), current is None

    def get_alias(self, namespace: str, name: str, alias: str) -> Alias | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(aliases).where(
                    aliases.c.namespace == namespace,
                    aliases.c.function == name,
                    aliases.c.name == alias,
                )
            ).first()
        return _alias(row) if row is not None else None

    def list_aliases(self, namespace: str, name: str) -> list[Alias]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(aliases)
                .where(aliases.c.namespace == namespace, aliases.c.function == name)
                .order_by(aliases.c.name)
            ).all()
        return [_alias(r) for r in rows]

    def delete_alias(
        self, namespace: str, name: str, alias: str, audit_entry: AuditEntry | None = None
    ) -> bool:
        """Delete the alias and the provisioned instances configured on it."""
        with self._engine.begin() as conn:
            result = conn.execute(
                aliases.delete().where(
                    aliases.c.namespace == namespace,
                    aliases.c.function == name,
                    aliases.c.name == alias,
                )
            )
            if result.rowcount:
                conn.execute(
                    provisioned.delete().where(
                        provisioned.c.namespace == namespace,
                        provisioned.c.function == name,
                        provisioned.c.qualifier == alias,
                    )
                )
                _record(conn, audit_entry)
        return bool(result.rowcount)

    # ---- triggers ------------------------------------------------------------------
    def create_trigger(self, trigger: Trigger, audit_entry: AuditEntry | None = None) -> Trigger:
        now = datetime.now(UTC)
        key = (
            (triggers.c.namespace == trigger.namespace)
            & (triggers.c.function == trigger.function)
            & (triggers.c.name == trigger.name)
        )
        with self._engine.begin() as conn:
            exists = conn.execute(
                sa.select(functions.c.name).where(
                    functions.c.namespace == trigger.namespace,
                    functions.c.name == trigger.function,
                )
            ).first()
            if exists is None:
                raise FunctionNotFoundError(f"function {trigger.function!r} does not exist")
            if conn.execute(sa.select(triggers.c.name).where(key)).first() is not None:
                raise TriggerExistsError(
                    f"function {trigger.function!r} already has a trigger {trigger.name!r}; "
                    "delete it first or choose another name"
                )
            conn.execute(
                triggers.insert().values(
                    namespace=trigger.namespace,
                    function=trigger.function,
                    name=trigger.name,
                    type=trigger.type,
                    qualifier=trigger.qualifier,
                    enabled=trigger.enabled,
                    config=json.dumps(trigger.config, sort_keys=True),
                    last_fired=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            _record(conn, audit_entry, type=trigger.type)
            row = conn.execute(sa.select(triggers).where(key)).one()
        return _trigger(row)

    def list_triggers(
        self, namespace: str | None = None, function: str | None = None
    ) -> list[Trigger]:
        query = sa.select(triggers).order_by(
            triggers.c.namespace, triggers.c.function, triggers.c.name
        )
        if namespace is not None:
            query = query.where(triggers.c.namespace == namespace)
        if function is not None:
            query = query.where(triggers.c.function == function)
        with self._engine.connect() as conn:
            return [_trigger(r) for r in conn.execute(query)]

    def set_trigger_enabled(
        self,
        namespace: str,
        function: str,
        name: str,
        enabled: bool,
        audit_entry: AuditEntry | None = None,
    ) -> Trigger | None:
        key = (
            (triggers.c.namespace == namespace)
            & (triggers.c.function == function)
            & (triggers.c.name == name)
        )
        with self._engine.begin() as conn:
            result = conn.execute(
                triggers.update().where(key).values(enabled=enabled, updated_at=datetime.now(UTC))
            )
            if not result.rowcount:
                return None
            _record(conn, audit_entry, enabled=enabled)
            return _trigger(conn.execute(sa.select(triggers).where(key)).one())

    def delete_trigger(
        self, namespace: str, function: str, name: str, audit_entry: AuditEntry | None = None
    ) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(
                triggers.delete().where(
                    triggers.c.namespace == namespace,
                    triggers.c.function == function,
                    triggers.c.name == name,
                )
            )
            if result.rowcount:
                _record(conn, audit_entry)
        return bool(result.rowcount)

    def set_trigger_fired(self, namespace: str, function: str, name: str, tick: datetime) -> None:
        """Remember the newest tick a timer fired (only ever moves forward)."""
        with self._engine.begin() as conn:
            conn.execute(
                triggers.update()
                .where(
                    triggers.c.namespace == namespace,
                    triggers.c.function == function,
                    triggers.c.name == name,
                    sa.or_(triggers.c.last_fired.is_(None), triggers.c.last_fired < tick),
                )
                .values(last_fired=tick)
            )

    # ---- provisioned instances -----------------------------------------------------
    def set_provisioned(
        self,
        namespace: str,
        name: str,
        qualifier: str,
        count: int,
        audit_entry: AuditEntry | None = None,
    ) -> None:
        """``count`` instances for the version or alias (0 removes the setting)."""
        key = (
            (provisioned.c.namespace == namespace)
            & (provisioned.c.function == name)
            & (provisioned.c.qualifier == qualifier)
        )
        with self._engine.begin() as conn:
            conn.execute(provisioned.delete().where(key))
            if count > 0:
                conn.execute(
                    provisioned.insert().values(
                        namespace=namespace,
                        function=name,
                        qualifier=qualifier,
                        count=count,
                        updated_at=datetime.now(UTC),
                    )
                )
            _record(conn, audit_entry, count=count)

    def list_provisioned(
        self, namespace: str | None = None, name: str | None = None
    ) -> list[tuple[str, str, str, int]]:
        """(namespace, function, qualifier, count) of every provisioned setting."""
        query = sa.select(provisioned).order_by(
            provisioned.c.namespace, provisioned.c.function, provisioned.c.qualifier
        )
        if namespace is not None:
            query = query.where(provisioned.c.namespace == namespace)
        if name is not None:
            query = query.where(provisioned.c.function == name)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [(r["namespace"], r["function"], r["qualifier"], int(r["count"])) for r in rows]

    def function_usage(self, namespace: str) -> tuple[int, int]:
        """How many functions the namespace has, and the sum of their code sizes."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    sa.func.count(), sa.func.coalesce(sa.func.sum(functions.c.code_size), 0)
                ).where(functions.c.namespace == namespace)
            ).one()
        return int(row[0]), int(row[1])

    # ---- namespaces --------------------------------------------------------
    def ensure_namespace(self, namespace: Namespace) -> bool:
        """Create the namespace unless it exists (no audit: the platform does this)."""
        with self._engine.begin() as conn:
            if conn.execute(
                sa.select(namespaces.c.name).where(namespaces.c.name == namespace.name)
            ).first():
                return False
            self._insert_namespace(conn, namespace)
        return True

    @staticmethod
    def _insert_namespace(conn: Connection, namespace: Namespace) -> None:
        conn.execute(
            namespaces.insert().values(
                name=namespace.name,
                created_at=namespace.created_at or datetime.now(UTC),
                **namespace.quotas.to_dict(),
            )
        )

    def create_namespace(self, namespace: Namespace, audit_entry: AuditEntry | None = None) -> bool:
        """Create; False when the name is taken."""
        with self._engine.begin() as conn:
            if conn.execute(
                sa.select(namespaces.c.name).where(namespaces.c.name == namespace.name)
            ).first():
                return False
            self._insert_namespace(conn, namespace)
            _record(conn, audit_entry)
        return True

    def get_namespace(self, name: str) -> Namespace | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(namespaces).where(namespaces.c.name == name)).first()
        return _namespace(row) if row else None

    def list_namespaces(self) -> list[Namespace]:
        with self._engine.connect() as conn:
            return [
                _namespace(r)
                for r in conn.execute(sa.select(namespaces).order_by(namespaces.c.name))
            ]

    def update_namespace(
        self, name: str, quotas: Quotas, audit_entry: AuditEntry | None = None
    ) -> Namespace | None:
        with self._engine.begin() as conn:
            result = conn.execute(
                namespaces.update().where(namespaces.c.name == name).values(**quotas.to_dict())
            )
            if not result.rowcount:
                return None
            _record(conn, audit_entry)
            row = conn.execute(sa.select(namespaces).where(namespaces.c.name == name)).one()
        return _namespace(row)

    def delete_namespace(
        self, name: str, audit_entry: AuditEntry | None = None
    ) -> tuple[bool, int, int]:
        """Delete it if it holds no function and no live key, in one transaction.

        Returns (deleted, functions, live keys)."""
        with self._engine.begin() as conn:
            n_functions = conn.execute(
                sa.select(sa.func.count()).where(functions.c.namespace == name)
            ).scalar_one()
            n_keys = conn.execute(
                sa.select(sa.func.count()).where(
                    api_keys.c.namespace == name, api_keys.c.revoked_at.is_(None)
                )
            ).scalar_one()
            if n_functions or n_keys:
                return False, int(n_functions), int(n_keys)
            result = conn.execute(namespaces.delete().where(namespaces.c.name == name))
            if result.rowcount:
                _record(conn, audit_entry)
        return bool(result.rowcount), 0, 0

    # ---- keys --------------------------------------------------------------
    def add_key(
        self,
        key: ApiKey,
        secret_hash: str,
        audit_entry: AuditEntry | None = None,
        access_key: AccessKey | None = None,
    ) -> ApiKey:
        created_at = key.created_at or datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    secret_hash=secret_hash,
                    namespace=key.namespace,
                    role=key.role.value,
                    name=key.name,
                    created_at=created_at,
                )
            )
            if access_key is not None:
                sealed = self._secrets.seal(
                    access_key.secret.encode(), f"access-key/{access_key.id}"
                )
                conn.execute(
                    access_keys.insert().values(id=access_key.id, key_id=key.id, secret=sealed)
                )
            _record(conn, audit_entry)
        return ApiKey(key.id, key.namespace, key.role, key.name, created_at)

    def find_key(self, secret_hash: str) -> ApiKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys).where(
                    api_keys.c.secret_hash == secret_hash, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        return _key(row) if row is not None else None

    def find_access_key(self, access_key_id: str) -> tuple[ApiKey, str] | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys, access_keys.c.secret.label("access_secret"))
                .join(access_keys, access_keys.c.key_id == api_keys.c.id)
                .where(access_keys.c.id == access_key_id, api_keys.c.revoked_at.is_(None))
            ).first()
        if row is None:
            return None
        secret = self._secrets.open(row.access_secret, f"access-key/{access_key_id}")
        return _key(row), secret.decode()

    def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, unless revoked."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            ).first()
        return _key(row) if row is not None else None

    def list_keys(self, namespace: str | None) -> list[ApiKey]:
        """Live keys of one namespace (all when None), oldest first."""
        query = (
            sa.select(api_keys)
            .where(api_keys.c.revoked_at.is_(None))
            .order_by(api_keys.c.namespace, api_keys.c.created_at, api_keys.c.id)
        )
        if namespace is not None:
            query = query.where(api_keys.c.namespace == namespace)
        with self._engine.connect() as conn:
            return [_key(r) for r in conn.execute(query)]

    def revoke_key(self, key_id: str, audit_entry: AuditEntry | None = None) -> bool:
        """Revoke; False when there was no live key with this id."""
        with self._engine.begin() as conn:
            result = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if result.rowcount:
                _record(conn, audit_entry)
        return bool(result.rowcount)

    def restore_key(self, secret_hash: str) -> bool:
        """Un-revoke the key with this secret hash (the preset admin key); False if none."""
        with self._engine.begin() as conn:
            result = conn.execute(
                api_keys.update()
                .where(api_keys.c.secret_hash == secret_hash)
                .values(revoked_at=None)
            )
        return bool(result.rowcount)

    def count_admin_keys(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        api_keys.c.role == Role.ADMIN.value, api_keys.c.revoked_at.is_(None)
                    )
                ).scalar_one()
            )

    def has_admin_key(self) -> bool:
        return self.count_admin_keys() > 0

    # ---- audit -------------------------------------------------------------
    def query_audit(
        self,
        *,
        namespace: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Entries matching every filter given, newest first."""
        query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if namespace is not None:
            query = query.where(audit.c.namespace == namespace)
        if action is not None:
            query = query.where(audit.c.action == action)
        if since is not None:
            query = query.where(audit.c.ts >= since)
        with self._engine.connect() as conn:
            rows = list(conn.execute(query))
        return [
            AuditRecord(
                id=r.id,
                ts=_utc(r.ts) or datetime.now(UTC),
                key_id=r.key_id,
                key_name=r.key_name,
                role=r.role,
                namespace=r.namespace,
                action=r.action,
                target=r.target,
                details=json.loads(r.details),
            )
            for r in rows
        ]

    def close(self) -> None:
        self._engine.dispose()
