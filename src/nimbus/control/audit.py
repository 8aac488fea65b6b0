"""Reading the audit trail (entries are written by the stores' writes themselves)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nimbus.domain.audit import AuditRecord
from nimbus.store.base import Store

MAX_AUDIT_LIMIT = 1000


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def query(
        self,
        *,
        namespace: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Entries newest first; ``since`` is epoch seconds."""
        since_dt = datetime.fromtimestamp(since, UTC) if since is not None else None
        return await asyncio.to_thread(
            self._store.query_audit,
            namespace=namespace,
            action=action,
            since=since_dt,
            limit=min(max(1, limit), MAX_AUDIT_LIMIT),
        )
