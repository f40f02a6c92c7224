"""The audit trail's writing side: every operator route runs inside `Auditor.action`, which records who did what to
which scope and what came of it as an AuditRecord on mail.audit.

An accepted action's records (its queue commands, suppression requests, webhook changes) and its audit record are
written together in one Kafka transaction (`RecordWriter`: the ingest replica's group commit), so no command exists
without its audit record and no audit record names a command that was not written. A refused action (a problem
raised inside the block) is audited on its own, best effort: if the event log is away, the refusal is logged and
the caller still gets its problem. A tenant key's entry is about its own tenant only: naming another tenant is
refused before the scope is noted, and the tenant is never recorded in the scope of its entries. Requests refused
before a key was recognised (401) are not audited, or anyone
could fill the trail; they are counted in the access log only.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

from fastapi import Request

from mailstream.core.clock import Clock
from mailstream.core.partitioner import partition_of
from mailstream.events.kafka import KafkaUnavailable
from mailstream.events.records import AuditRecord, Record
from mailstream.events.topics import AUDIT, TopicSpec
from mailstream.ingest.audit_view import AuditView
from mailstream.ingest.auth import Principal
from mailstream.ingest.problems import Problem
from mailstream.intake.submission import RecordWriter
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
WRITE_TIMEOUT = 10.0
MAX_REQUEST_ID = 128


@cache
def partition_keys(stem: str, partitions: int) -> tuple[str, ...]:
    """A key per partition (`<stem>#<n>`, the first n landing there): a command for every partition goes in one
    transaction, and the transactional producer places records by key only."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        key = f"{stem}#{n}"
        found.setdefault(partition_of(key.encode(), partitions), key)
        n += 1
    return tuple(found[p] for p in range(partitions))


@dataclass
class Action:
    """What a route fills in while it acts; `write` commits its records with the audit record."""

    _auditor: Auditor
    request: Request
    operation: str
    who: Principal | None = None
    scope: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    affected: int | None = None
    command_ids: list[str] = field(default_factory=list)
    status: int = 200
    written: bool = False

    def name(self, **scope: str | None) -> None:
        self.scope.update({k: v for k, v in scope.items() if v is not None})

    def set(self, **parameters: object) -> None:
        self.parameters.update({k: _text(v) for k, v in parameters.items() if v is not None})

    async def write(self, records: Sequence[tuple[TopicSpec[Any], str, Record]], *, status: int = 200) -> None:
        """`records` (topic, key, record) and this action's audit record, all or nothing (KafkaUnavailable: none)."""
        self.status = status
        entry = self._auditor.entry(self, None)
        encoded = [(t.name, k.encode(), t.encode(r)) for t, k, r in records]
        encoded.append((AUDIT.name, _audit_key(entry).encode(), AUDIT.encode(entry)))
        await self._auditor.writer.write(encoded, timeout=WRITE_TIMEOUT)
        self.written = True
        self._auditor.committed(entry)


class Auditor:
    def __init__(self, writer: RecordWriter, clock: Clock, view: AuditView | None = None) -> None:
        self.writer, self.clock, self.view = writer, clock, view

    def committed(self, entry: AuditRecord) -> None:
        if self.view is not None:
            self.view.put(entry)  # read your writes: the replica's tail brings it later

    @contextlib.asynccontextmanager
    async def action(self, request: Request, operation: str) -> AsyncIterator[Action]:
        """Audit what the block does: its `write`, else (no records) an accepted entry alone, or the problem it
        raised as refused."""
        act = Action(self, request, operation)
        try:
            yield act
        except Problem as exc:
            if act.who is not None:  # see the module's note on 401s
                await self._alone(act, exc.status, exc.detail or exc.title)
            raise
        except KafkaUnavailable:
            raise  # nothing was written: the caller gets 503 and may retry; no entry claims otherwise
        if not act.written:
            await self._alone(act, act.status, None, required=True)

    def entry(self, act: Action, problem: str | None, status: int | None = None) -> AuditRecord:
        who = act.who
        return AuditRecord(
            id=uuid.uuid4().hex,
            at=self.clock(),
            actor=who.key_id if who is not None else "anonymous",
            actor_tenant=who.tenant if who is not None else None,
            admin=who.admin if who is not None else False,
            operation=act.operation,
            route=f"{act.request.method} {act.request.url.path}",
            scope=_recorded_scope(who, act.scope),
            reason=act.reason,
            parameters=dict(act.parameters),
            result="refused" if problem is not None else "accepted",
            status=status if status is not None else act.status,
            problem=problem,
            affected=act.affected if problem is None else 0,
            command_ids=tuple(act.command_ids),
            request_id=request_id(act.request),
        )

    async def _alone(self, act: Action, status: int, problem: str | None, *, required: bool = False) -> None:
        entry = self.entry(act, problem, status)
        records = [(AUDIT.name, _audit_key(entry).encode(), AUDIT.encode(entry))]
        try:
            await self.writer.write(records, timeout=WRITE_TIMEOUT)
            self.committed(entry)
        except KafkaUnavailable as exc:
            if required:  # an accepted action must not go unaudited: the caller is told it may not have happened
                raise
            log.warning("audit_refusal_unwritten", operation=act.operation, status=status, error=str(exc))


def request_id(request: Request) -> str:
    """The caller's X-Request-Id (visible ASCII, bounded), else one made once for the request."""
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable() and " " not in given:
        return given
    made: str | None = getattr(request.state, "request_id", None)
    if made is None:
        made = request.state.request_id = uuid.uuid4().hex
    return made


def _recorded_scope(who: Principal | None, scope: dict[str, str]) -> dict[str, str]:
    """A tenant key's entry names no other tenant: the trail's tenant view and filter select entries by the scope's
    tenant, so a refused request naming another must not become an entry that tenant reads. Routes check rights
    before naming the scope (tenant_rights.acting_tenant); this holds for any route that does not."""
    if who is None or who.admin or scope.get("tenant") in (None, who.tenant):
        return dict(scope)
    return {k: v for k, v in scope.items() if k != "tenant"}


def _audit_key(entry: AuditRecord) -> str:
    return entry.actor_tenant or "admin"


def _text(value: object) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
