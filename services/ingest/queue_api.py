"""Queue inspection and admin operations: GET /api/queue/servers and /api/queue/stats (capacity, counts
and the completion estimate); POST /api/admin/queue-state (active, suspended, draining, disabled), with
POST and DELETE /api/admin/suspend as its shorthand for suspended and active; POST /api/admin/bounce
(cancel a scope's messages, KumoMTA's admin bounce); POST /api/transactions/{id}/cancel.

Every operation travels as a QueueCommand event to scheduler stage 1, keyed by the tenant's route key,
so the partition that owns the tenant's queues applies it in order with everything else it does; a
command that names no tenant (an admin's domain-wide operation) goes to every partition.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailstream.config.model import Config
from mailstream.core.clock import Clock
from mailstream.core.duration import parse_duration
from mailstream.core.egress_path import EgressPath
from mailstream.core.queue_scope import QueueScope
from mailstream.events.producer import EventSink
from mailstream.events.records import ADMIN_ISSUER, QueueAction, QueueCommand, QueueState, Record
from mailstream.events.topics import QUEUE_COMMANDS, TopicSpec, route_key
from mailstream.ingest import api_models as api
from mailstream.ingest.audit import Action, Auditor, partition_keys
from mailstream.ingest.auth import KeyRing, Principal
from mailstream.ingest.problems import Problem, from_validation_error, read_json
from mailstream.ingest.queue_report import server_rows, shaping_row, sources_for_tenant, stats_report
from mailstream.ingest.status_view import StatusView
from mailstream.ingest.tenant_rights import acting_tenant
from mailstream.intake.capacity_view import CapacityView
from mailstream.intake.submission import DirectWriter

Name = Field(default=None, min_length=1, max_length=255)
MAX_BODY = 16 * 1024
ACTION_OF_STATE: dict[QueueState, QueueAction] = {
    "active": "resume",
    "suspended": "suspend",
    "draining": "drain",
    "disabled": "disable",
}
MAX_DURATION = timedelta(days=366)  # longer is a state to set without an end
DEFAULT_BOUNCE = timedelta(minutes=5)  # KumoMTA's default: new matches are cancelled for this long
Reason = Field(default=None, max_length=500)


class ScopeRequest(BaseModel):
    """The queues an operation covers: those matching every field given."""

    model_config = ConfigDict(extra="forbid")
    queue: str | None = Name
    tenant: str | None = Name
    campaign: str | None = Name
    domain: str | None = Name

    @field_validator("queue", "tenant", "campaign", "domain")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        if value is not None and value != value.strip():
            raise ValueError("a name has no surrounding spaces")  # QueueScope's rule, told as a 422
        return value

    @model_validator(mode="after")
    def _names_something(self) -> ScopeRequest:
        if self.queue is None and self.tenant is None and self.campaign is None and self.domain is None:
            raise ValueError("name at least one of queue, tenant, campaign, domain")
        return self


class SuspendRequest(ScopeRequest):
    reason: str | None = Reason
    # "2h", "30 minutes", or seconds; the state ends by itself after it
    duration: Annotated[timedelta, api.DURATION] | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("duration is a string such as '2h' or a number of seconds")
        try:
            parsed = parse_duration(value)
        except OverflowError:
            parsed = MAX_DURATION * 2  # past what timedelta holds: refused below as too long
        if parsed <= timedelta(0):
            raise ValueError("duration must be positive")
        if parsed > MAX_DURATION:  # an end the scheduler can keep and a datetime can hold
            raise ValueError(f"duration is longer than {MAX_DURATION.days} days")
        return parsed


class StateRequest(SuspendRequest):
    state: QueueState


class BounceRequest(SuspendRequest):
    reason: str = Field(min_length=1, max_length=500)  # required, as KumoMTA requires it


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Reason


class QueueControls:
    """Turns a control on a scope into its QueueCommand, checked against the caller's rights: the one way every
    route that sets a queue's state (these, kumo_admin's) builds its command."""

    def __init__(self, config: Config, view: CapacityView, clock: Clock) -> None:
        self.keys, self.view, self.clock = KeyRing(config.ingest.api_keys), view, clock

    def principal(self, request: Request) -> Principal:
        return self.keys.authenticate(request.headers.get("authorization"))

    def tenant_filter(self, who: Principal, tenant: str | None) -> tuple[str | None, bool]:
        """(tenant, all tenants?) the caller may read."""
        return acting_tenant(who, tenant), who.admin and tenant is None

    def prepare(self, act: Action, req: ScopeRequest, action: QueueAction) -> QueueCommand:
        """The command `req` asks for, its scope, reason and parameters noted on `act`; not written yet."""
        who = act.who = self.principal(act.request)
        tenant = acting_tenant(who, req.tenant)  # a tenant key acts on its own queues only; before the scope is noted
        act.name(queue=req.queue, tenant=tenant, campaign=req.campaign, domain=req.domain)
        scope = QueueScope(queue=req.queue, tenant=tenant, campaign=req.campaign, domain=req.domain)
        if not who.admin and _admin_controlled(self.view, scope, bounce=action == "cancel"):
            raise Problem(403, "Forbidden", "an admin set this control: only an admin may change it")
        now = self.clock()
        duration = req.duration if isinstance(req, SuspendRequest) else None
        if action == "cancel" and duration is None:
            duration = DEFAULT_BOUNCE
        until = now + duration if duration is not None and action != "resume" else None
        reason = req.reason if isinstance(req, SuspendRequest) and action != "resume" else None
        cmd = QueueCommand(
            id=uuid.uuid4().hex,
            action=action,
            queue=scope.queue,
            tenant=scope.tenant,
            campaign=scope.campaign,
            domain=scope.domain,
            reason=reason,
            until=until,
            issued_at=now,
            issued_by=_issuer(who),
        )
        act.name(tenant=scope.tenant)
        act.reason = cmd.reason
        act.set(duration=duration if action != "resume" else None, until=until)
        act.command_ids.append(cmd.id)
        return cmd


def queue_router(
    config: Config,
    view: CapacityView,
    producer: EventSink,
    clock: Clock,
    statuses: StatusView,
    auditor: Auditor | None = None,
) -> APIRouter:
    """Each operation is audited (`auditor`: its commands and audit record in one transaction; by default each
    record written on its own through `producer`, for tests of the routes alone)."""
    controls = QueueControls(config, view, clock)
    principal, tenant_filter = controls.principal, controls.tenant_filter
    audited = auditor or Auditor(DirectWriter(producer), clock)
    egress = config.egress
    router = APIRouter()

    @router.get("/api/queue/servers", response_model=api.Servers, responses=api.problems(401))
    async def servers(request: Request) -> JSONResponse:
        who = principal(request)  # a tenant sees the sources its mail can use, not the others' traffic
        only = None if who.admin else sources_for_tenant(egress, config.queues, who.tenant)
        now = clock()
        return JSONResponse({"data": server_rows(egress, view.usage, now, only, view.shaping_in_force(now))})

    @router.get("/api/queue/stats", response_model=api.Stats, responses=api.problems(401, 403, 422))
    async def stats(request: Request, tenant: str | None = None, campaign: str | None = None) -> JSONResponse:
        tenant, everyone = tenant_filter(principal(request), tenant)
        return JSONResponse(
            {
                "data": stats_report(
                    list(view.stats.values()),
                    egress,
                    view.usage,
                    clock(),
                    tenant=tenant,
                    all_tenants=everyone,
                    campaign=campaign,
                )
            }
        )

    async def command(act: Action, req: ScopeRequest, action: QueueAction) -> JSONResponse:
        cmd = controls.prepare(act, req, action)
        await act.write(placed(cmd), status=202)  # affected: not known here, stage 1 applies it
        return JSONResponse(status_code=202, content=_answer(cmd))

    command_errors = api.problems(400, 401, 403, 413, 422, 503)
    scope_query = api.query("queue", "tenant", "campaign", "domain")["parameters"]

    @router.post(
        "/api/admin/suspend",
        status_code=202,
        response_model=api.CommandAnswer,
        responses=command_errors,
        openapi_extra={
            **api.json_body(SuspendRequest, required=False),
            "parameters": [*scope_query, *api.query("reason", "duration")["parameters"]],
        },
    )
    async def suspend(request: Request) -> JSONResponse:
        async with audited.action(request, "suspend") as act:
            act.who = principal(request)
            return await command(act, _parse(SuspendRequest, await _body_or_query(request)), "suspend")

    @router.delete(
        "/api/admin/suspend",
        status_code=202,
        response_model=api.CommandAnswer,
        responses=command_errors,
        openapi_extra={**api.json_body(ScopeRequest, required=False), "parameters": scope_query},
    )
    async def resume(request: Request) -> JSONResponse:
        async with audited.action(request, "resume") as act:
            act.who = principal(request)
            return await command(act, _parse(ScopeRequest, await _body_or_query(request)), "resume")

    @router.post(
        "/api/admin/queue-state",
        status_code=202,
        response_model=api.CommandAnswer,
        responses=command_errors,
        openapi_extra=api.json_body(StateRequest, example={"tenant": "acme", "state": "draining"}),
    )
    async def queue_state(request: Request) -> JSONResponse:
        async with audited.action(request, "queue-state") as act:
            act.who = principal(request)
            req = _parse(StateRequest, await read_json(request, MAX_BODY))
            act.operation = ACTION_OF_STATE[req.state]
            act.set(state=req.state)
            return await command(act, req, ACTION_OF_STATE[req.state])

    @router.post(
        "/api/admin/bounce",
        status_code=202,
        response_model=api.CommandAnswer,
        responses=command_errors,
        openapi_extra=api.json_body(BounceRequest, example={"campaign": "spring", "reason": "sent by mistake"}),
    )
    async def bounce(request: Request) -> JSONResponse:
        async with audited.action(request, "bounce") as act:
            act.who = principal(request)
            return await command(act, _parse(BounceRequest, await read_json(request, MAX_BODY)), "cancel")

    @router.post(
        "/api/transactions/{tx_id}/cancel",
        response_model=api.CancelAnswer,
        responses=api.problems(400, 401, 404, 413, 422, 503),
        openapi_extra=api.json_body(CancelRequest, required=False),
    )
    async def cancel(tx_id: str, request: Request) -> JSONResponse:
        """Koukan's cancel: an empty body (or {"reason": ...}); nothing happens to a finished transaction."""
        async with audited.action(request, "cancel") as act:
            who = act.who = principal(request)
            act.name(message=tx_id)
            req = _parse(CancelRequest, await read_json(request, MAX_BODY, empty={}))
            act.reason = req.reason
            status = statuses.get(tx_id)
            if status is None or not who.may_see(status.tenant):
                raise Problem(404, "Not found", f"no transaction {tx_id!r} visible to this API key")
            act.name(queue=status.queue, tenant=status.tenant)
            if not status.is_final:
                cmd = QueueCommand(
                    id=uuid.uuid4().hex,
                    action="cancel",
                    queue=status.queue,
                    tenant=status.tenant,
                    reason=req.reason,
                    transaction_id=tx_id,
                    issued_at=clock(),
                    issued_by=_issuer(who),
                )
                act.command_ids.append(cmd.id)
                act.affected = 1
                await act.write(placed(cmd))
            else:
                act.affected = 0
            return JSONResponse(
                {
                    "name": f"transactions/{tx_id}",
                    "cancel_requested": not status.is_final,
                    "status": status.status,
                    "done": status.is_final,
                }
            )

    @router.get("/api/admin/suspensions", response_model=api.Suspensions, responses=api.problems(401, 403, 422))
    async def suspensions(request: Request, tenant: str | None = None) -> JSONResponse:
        who = principal(request)
        tenant, everyone = tenant_filter(who, tenant)
        now = clock()
        report = stats_report(list(view.stats.values()), egress, view.usage, now, tenant=tenant, all_tenants=everyone)
        # A path's action concerns every tenant whose mail can use its source; a queue action, its tenant only.
        sources = None if who.admin else sources_for_tenant(egress, config.queues, who.tenant)
        shaping = [
            shaping_row(c)
            for c in view.shaping_in_force(now)
            if (c.path is None and (everyone or c.tenant == tenant))
            or (c.path is not None and (sources is None or EgressPath.parse(c.path).source in sources))
        ]
        return JSONResponse({"data": report["suspensions"], "shaping": shaping})

    return router


def _admin_controlled(view: CapacityView, scope: QueueScope, *, bounce: bool) -> bool:
    """Whether the published state shows an admin's state (or bounce) on exactly this scope (stage 1 enforces
    it too)."""
    named = (scope.queue, scope.tenant, scope.campaign, scope.domain)
    return any(
        s.issued_by == ADMIN_ISSUER
        and (s.state == "bounce") == bounce
        and (s.queue, s.tenant, s.campaign, s.domain) == named
        for stats in view.stats.values()
        for s in stats.suspensions
    )


def _issuer(who: Principal) -> str:
    return ADMIN_ISSUER if who.admin else f"tenant:{who.tenant}"


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def placed(cmd: QueueCommand) -> list[tuple[TopicSpec[Any], str, Record]]:
    """Beside the tenant's queues (its route key), or on every partition when the command names no tenant (a key
    landing on each: stage 1 applies a command where it arrives, whatever its key)."""
    key = route_key(cmd.tenant, cmd.queue or "*")
    if cmd.tenant is not None or cmd.transaction_id is not None:
        return [(QUEUE_COMMANDS, key, cmd)]
    return [(QUEUE_COMMANDS, k, cmd) for k in partition_keys(key, QUEUE_COMMANDS.partitions)]


def _answer(cmd: QueueCommand) -> dict[str, Any]:
    return {
        "id": cmd.id,
        "operation": cmd.action,
        "scope": _scope_json(scope_of(cmd)),
        "reason": cmd.reason,
        "until": cmd.until.isoformat() if cmd.until else None,
        "timestamp": cmd.issued_at.isoformat(),
    }


def scope_of(cmd: QueueCommand) -> QueueScope:
    return QueueScope(queue=cmd.queue, tenant=cmd.tenant, campaign=cmd.campaign, domain=cmd.domain)


def _scope_json(scope: QueueScope) -> dict[str, str]:
    return {f: v for f in ("queue", "tenant", "campaign", "domain") if (v := getattr(scope, f)) is not None}


async def _body_or_query(request: Request) -> Any:
    """The JSON body, or the query parameters when there is none (DELETE requests often carry no body)."""
    body = await read_json(request, MAX_BODY, empty=None)
    return dict(request.query_params) if body is None else body
