"""Queue inspection and admin operations: GET /api/queue/servers and /api/queue/stats (capacity, counts
and the completion estimate), POST and DELETE /api/admin/suspend (suspend and resume scheduled queues).

Suspend and resume travel as QueueCommand events to scheduler stage 1, keyed by the tenant's route key,
so the partition that owns the tenant's queues applies them in order with everything else it does; a
command that names no tenant (an admin's domain-wide suspension) goes to every partition.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailstream.config.model import Config
from mailstream.core.clock import Clock
from mailstream.core.duration import parse_duration
from mailstream.core.queue_scope import QueueScope
from mailstream.events.kafka import EventProducer
from mailstream.events.records import ADMIN_ISSUER, QueueCommand
from mailstream.events.topics import QUEUE_COMMANDS, route_key
from mailstream.ingest.auth import KeyRing, Principal
from mailstream.ingest.capacity_view import CapacityView
from mailstream.ingest.problems import Problem, from_validation_error, read_json
from mailstream.ingest.queue_report import server_rows, stats_report

Name = Field(default=None, min_length=1, max_length=255)
MAX_BODY = 16 * 1024


class ScopeRequest(BaseModel):
    """The queues an operation covers: those matching every field given."""

    model_config = ConfigDict(extra="forbid")
    queue: str | None = Name
    tenant: str | None = Name
    campaign: str | None = Name
    domain: str | None = Name

    @model_validator(mode="after")
    def _names_something(self) -> ScopeRequest:
        if self.queue is None and self.tenant is None and self.campaign is None and self.domain is None:
            raise ValueError("name at least one of queue, tenant, campaign, domain")
        return self


class SuspendRequest(ScopeRequest):
    reason: str | None = Field(default=None, max_length=500)
    duration: timedelta | None = None  # "2h", "30 minutes", or seconds; the suspension lifts itself after it

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("duration is a string such as '2h' or a number of seconds")
        parsed = parse_duration(value)
        if parsed <= timedelta(0):
            raise ValueError("duration must be positive")
        return parsed


def queue_router(config: Config, view: CapacityView, producer: EventProducer, clock: Clock) -> APIRouter:
    keys = KeyRing(config.ingest.api_keys)
    egress = config.egress
    router = APIRouter()

    def principal(request: Request) -> Principal:
        return keys.authenticate(request.headers.get("authorization"))

    def tenant_filter(who: Principal, tenant: str | None) -> tuple[str | None, bool]:
        """(tenant, all tenants?) the caller may read."""
        if who.admin:
            return tenant, tenant is None
        if tenant is not None and tenant != who.tenant:
            raise Problem(403, "Forbidden", f"tenant: {tenant!r} is not the tenant of this API key",
                          [{"field": "tenant", "message": "not the tenant of this API key"}])
        return who.tenant, False

    @router.get("/api/queue/servers")
    async def servers(request: Request) -> JSONResponse:
        principal(request)
        return JSONResponse({"data": server_rows(egress, view.usage, clock())})

    @router.get("/api/queue/stats")
    async def stats(request: Request, tenant: str | None = None, campaign: str | None = None) -> JSONResponse:
        tenant, everyone = tenant_filter(principal(request), tenant)
        return JSONResponse({"data": stats_report(list(view.stats.values()), egress, view.usage, clock(),
                                                  tenant=tenant, all_tenants=everyone, campaign=campaign)})

    async def command(request: Request, action: Literal["suspend", "resume"]) -> JSONResponse:
        who = principal(request)
        data = await _body_or_query(request)
        try:
            req = SuspendRequest.model_validate(data) if action == "suspend" else ScopeRequest.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        tenant = req.tenant
        if not who.admin:
            tenant, _ = tenant_filter(who, req.tenant)  # a tenant key acts on its own queues only
        scope = QueueScope(queue=req.queue, tenant=tenant, campaign=req.campaign, domain=req.domain)
        if not who.admin and _admin_suspended(view, scope):
            raise Problem(403, "Forbidden", "an admin suspended these queues: only an admin may change that")
        now = clock()
        until = now + req.duration if isinstance(req, SuspendRequest) and req.duration is not None else None
        cmd = QueueCommand(id=uuid.uuid4().hex, action=action, queue=scope.queue, tenant=scope.tenant,
                           campaign=scope.campaign, domain=scope.domain,
                           reason=req.reason if isinstance(req, SuspendRequest) else None, until=until,
                           issued_at=now, issued_by=ADMIN_ISSUER if who.admin else f"tenant:{who.tenant}")
        if scope.tenant is not None:
            partitions: list[int | None] = [None]  # placed by the tenant's route key, beside its queues
        else:
            partitions = list(range(QUEUE_COMMANDS.partitions))
        key = route_key(scope.tenant, scope.queue or "*")
        await asyncio.gather(*(producer.send(QUEUE_COMMANDS, key, cmd, partition=p) for p in partitions))
        return JSONResponse(status_code=202, content={
            "id": cmd.id, "operation": action, "scope": _scope_json(scope), "reason": cmd.reason,
            "until": until.isoformat() if until else None, "timestamp": now.isoformat()})

    @router.post("/api/admin/suspend", status_code=202)
    async def suspend(request: Request) -> JSONResponse:
        return await command(request, "suspend")

    @router.delete("/api/admin/suspend", status_code=202)
    async def resume(request: Request) -> JSONResponse:
        return await command(request, "resume")

    @router.get("/api/admin/suspensions")
    async def suspensions(request: Request, tenant: str | None = None) -> JSONResponse:
        tenant, everyone = tenant_filter(principal(request), tenant)
        report = stats_report(list(view.stats.values()), egress, view.usage, clock(), tenant=tenant,
                              all_tenants=everyone)
        return JSONResponse({"data": report["suspensions"]})

    return router


def _admin_suspended(view: CapacityView, scope: QueueScope) -> bool:
    """Whether the published state shows an admin's suspension of exactly this scope (stage 1 enforces it too)."""
    return any(s.issued_by == ADMIN_ISSUER and (s.queue, s.tenant, s.campaign, s.domain)
               == (scope.queue, scope.tenant, scope.campaign, scope.domain)
               for stats in view.stats.values() for s in stats.suspensions)


def _scope_json(scope: QueueScope) -> dict[str, str]:
    return {f: v for f in ("queue", "tenant", "campaign", "domain") if (v := getattr(scope, f)) is not None}


async def _body_or_query(request: Request) -> Any:
    """The JSON body, or the query parameters when there is none (DELETE requests often carry no body)."""
    body = await read_json(request, MAX_BODY, empty=None)
    return dict(request.query_params) if body is None else body
