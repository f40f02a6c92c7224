"""The audit trail's reading side: each replica's projection of mail.audit and `GET /api/admin/audit`.

The projection is in memory, bounded to the newest `kept` entries (docs/design-decisions.md says why not SQLite):
each replica tails the topic from its beginning at start-up, and its own writes are put in at once (read your
writes), the tail's copy of them skipped by id. Entries are listed newest first in the order this replica read
them; the cursor is that order's sequence number, so a page is stable while entries keep arriving.

An admin key reads every entry. A tenant's key reads the entries about its tenant: those made with its tenant's
keys, and those whose scope names its tenant (an admin's suspension of its queues); not an admin's action on a
domain across tenants, nor another tenant's.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from mailstream.config.model import Config
from mailstream.events.kafka import Bootstrap, TopicTailer
from mailstream.events.records import AuditRecord
from mailstream.events.serde import SerdeError
from mailstream.events.topics import AUDIT
from mailstream.ingest import api_models as api
from mailstream.ingest.auth import KeyRing, Principal
from mailstream.ingest.tenant_rights import acting_tenant
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
DEFAULT_KEPT = 100_000  # ~1 KB each: ~100 MB at most per replica
MAX_PAGE = 500


class AuditPage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: list[AuditRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null: the last page.")


class AuditView:
    def __init__(self, kept: int = DEFAULT_KEPT) -> None:
        self._kept = kept
        self._entries: OrderedDict[str, tuple[int, AuditRecord]] = OrderedDict()
        self._seq = 0

    def put(self, entry: AuditRecord) -> None:
        if entry.id in self._entries:
            return  # this replica's own write, read back by the tail
        self._seq += 1
        self._entries[entry.id] = (self._seq, entry)
        while len(self._entries) > self._kept:
            self._entries.popitem(last=False)

    def apply(self, value: bytes | None) -> None:
        try:
            self.put(AUDIT.decode(value))
        except SerdeError as exc:
            log.error("audit_record_unreadable", error=str(exc))

    def page(
        self,
        who: Principal,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        operation: str | None = None,
        scope: str | None = None,
        result: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> tuple[list[AuditRecord], int | None]:
        """The newest `limit` matching entries older than sequence `before`; and the next page's cursor."""
        out: list[AuditRecord] = []
        for seq, entry in reversed(self._entries.values()):
            if before is not None and seq >= before:
                continue
            if not _visible(who, entry, tenant):
                continue
            if (since is not None and entry.at < since) or (until is not None and entry.at >= until):
                continue
            if actor is not None and actor not in (entry.actor, entry.actor_tenant):
                continue
            if operation is not None and entry.operation != operation:
                continue
            if result is not None and entry.result != result:
                continue
            if scope is not None and not any(scope in f"{k}={v}" for k, v in entry.scope.items()):
                continue
            if len(out) == limit:
                return out, seq + 1
            out.append(entry)
        return out, None

    async def run(self, bootstrap: Bootstrap) -> None:
        tailer = TopicTailer(bootstrap, AUDIT.name, AUDIT.partitions, {})
        try:
            while True:
                for msg in await tailer.poll_batch(timeout=0.5):
                    self.apply(msg.value())
                await asyncio.sleep(0)
        finally:
            await tailer.close()


def _visible(who: Principal, entry: AuditRecord, tenant: str | None) -> bool:
    about = {entry.actor_tenant, entry.scope.get("tenant")} - {None}
    if not who.admin:
        return who.tenant in about
    return tenant is None or tenant in about


def audit_router(config: Config, view: AuditView) -> APIRouter:
    keys = KeyRing(config.ingest.api_keys)
    router = APIRouter()

    @router.get("/api/admin/audit", response_model=AuditPage, responses=api.problems(401, 403, 422))
    async def audit(
        request: Request,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        actor: Annotated[str | None, Query(max_length=255, description="A key id, or a tenant")] = None,
        operation: Annotated[str | None, Query(max_length=64)] = None,
        scope: Annotated[str | None, Query(max_length=255, description="In a scope's 'field=value'")] = None,
        result: Annotated[str | None, Query(pattern="^(accepted|refused)$")] = None,
        tenant: Annotated[str | None, Query(max_length=255, description="Admins: the entries about one tenant")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(pattern="^[0-9]{1,18}$")] = None,
    ) -> AuditPage:
        """The audit trail, newest first: every operator action through the API with who, what, scope and result."""
        who = keys.authenticate(request.headers.get("authorization"))
        acting_tenant(who, tenant)
        entries, next_seq = view.page(
            who,
            since=since,
            until=until,
            actor=actor,
            operation=operation,
            scope=scope,
            result=result,
            tenant=tenant,
            limit=limit,
            before=int(cursor) if cursor is not None else None,
        )
        return AuditPage(data=entries, next_cursor=str(next_seq) if next_seq is not None else None)

    return router
