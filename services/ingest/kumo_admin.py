"""KumoMTA's HTTP admin API, where mailstream has the operation: tooling written for kumod's `/api/admin/*/v1`
(kcli, scripts) works against ingest, with KumoMTA's request and response field names.

suspend, resume and bounce map onto the queue controls of queue_api (`QueueControls.prepare`, the same commands to
scheduler stage 1), rebind onto the rebind QueueOperation of operations_api (`QueueOperations.run`); each route is
audited like them and a tenant's key acts on its own tenant's queues only. What differs from kumod, because
mailstream's operation differs:
- a scope must name something: no criteria is 422, not every queue; `routing_domain` is refused (scheduled queues
  here are not split by routing domain), as is `suppress_logging: true` on a bounce (an AdminBounce is always
  logged);
- ids are the command's, as a UUID; GET and DELETE read the controls the scheduler publishes (mail.queue-stats,
  within seconds of a POST); an entry set without an end lists `duration` null;
- bounce counts (`bounced`, `total_bounced`) are empty and 0, as kumod answers since bounces became asynchronous;
- rebind moves to one named queue of the same tenant and recipient domain and/or to an egress pool: `data` holds
  `queue`, `routing_domain` and mailstream's `egress_pool`, nothing else (kumo_rebind says how they combine);
  `trigger_rebind_event` and `always_flush` true are refused (no policy event runs here; a rebound message keeps
  its due time); no AdminRebind record is logged, with or without `suppress_logging` (the new status version and
  the audit entry record it); it answers kumod's `{}` once the operation is written, with a `Location` to read its
  QueueOperationResult (GET /api/queue/operations/{id}: the messages moved, counted by stage 1);
- `inspect-message` answers from the transaction status (no `data`: bodies are not kept with the status).
Not here, for want of the operation: DELETE bounce/v1 (a bounce rule here runs until it lapses), xfer, the
ready-queue routes (suspend-ready-q, ready-q-states, inspect-ready-q: mailstream has no ready-queue state),
inspect-sched-q, and the diagnostics (bump-config-epoch, trace-smtp-*, memory, spool).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailstream.config.model import Config
from mailstream.core.clock import Clock
from mailstream.events.records import QueueAction, QueueSuspension
from mailstream.ingest import api_models as api
from mailstream.ingest.audit import Action, Auditor
from mailstream.ingest.auth import Principal
from mailstream.ingest.kumo_rebind import KumoCriteria, RebindV1Request, rebind_operation
from mailstream.ingest.operation_view import OperationView
from mailstream.ingest.operations_api import QueueOperations
from mailstream.ingest.problems import Problem, from_validation_error, read_json
from mailstream.ingest.queue_api import (
    MAX_BODY,
    BounceRequest,
    QueueControls,
    ScopeRequest,
    SuspendRequest,
    placed,
)
from mailstream.ingest.status_view import StatusView
from mailstream.ingest.tenant_rights import acting_tenant
from mailstream.intake.capacity_view import CapacityView


class KumoRequest(KumoCriteria):
    queue_names: list[str] = Field(default=[], max_length=100, description="Overrides domain, campaign and tenant")
    duration: str | float | None = Field(default=None, description="'5m', '2 hours' or seconds")
    expires: AwareDatetime | None = None

    @field_validator("queue_names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        if any(not 0 < len(n) <= 255 for n in names):
            raise ValueError("a queue name is 1 to 255 characters")
        return names

    @model_validator(mode="after")
    def _one_end(self) -> KumoRequest:
        if self.duration is not None and self.expires is not None:
            raise ValueError("give duration or expires, not both")
        return self


class SuspendV1Request(KumoRequest):
    pass


class BounceV1Request(KumoRequest):
    routing_domain: None = Field(default=None, description="Not supported: must be absent")
    suppress_logging: bool = Field(default=False, description="Not supported: must be false")

    @field_validator("suppress_logging")
    @classmethod
    def _logged(cls, value: bool) -> bool:
        if value:
            raise ValueError("mailstream always logs an AdminBounce")
        return value


class IdRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: uuid.UUID


class IdAnswer(api.Answer):
    id: str


class BounceV1Answer(api.Answer):
    id: str
    bounced: dict[str, int]
    total_bounced: int


class SuspendV1Entry(api.Answer):
    id: str
    domain: str | None
    campaign: str | None
    tenant: str | None
    queue: str | None = Field(description="mailstream's: a suspension of one scheduled queue names it here")
    reason: str | None
    duration: str | None = Field(description="Time left, as '1h 59m 3s'; null: until deleted")


class BounceV1Entry(SuspendV1Entry):
    routing_domain: None
    bounced: dict[str, int]
    total_bounced: int


class Empty(api.Answer):
    pass


class InspectedMessage(api.Answer):
    sender: str
    recipient: str
    meta: dict[str, Any]
    due: datetime | None
    num_attempts: int
    scheduling: None


class InspectMessageV1(api.Answer):
    id: str
    message: InspectedMessage


def kumo_admin_router(
    config: Config, view: CapacityView, statuses: StatusView, results: OperationView, clock: Clock, auditor: Auditor
) -> APIRouter:
    controls = QueueControls(config, view, clock)
    operations = QueueOperations(config, view, statuses, results, clock)
    router = APIRouter(tags=["KumoMTA compatible"])
    errors = api.problems(400, 401, 403, 413, 422, 503)

    async def control(act: Action, req: KumoRequest, action: QueueAction) -> str:
        """The request's commands (one per queue name, else one for its scope), written with their audit record."""
        act.who = controls.principal(act.request)
        now = clock()
        duration = (req.expires - now).total_seconds() if req.expires is not None else req.duration
        scope_model = BounceRequest if action == "cancel" else SuspendRequest
        scopes: list[dict[str, str | None]] = [{"queue": q} for q in req.queue_names] or [
            {"domain": req.domain, "campaign": req.campaign, "tenant": req.tenant}
        ]
        try:
            asks = [scope_model.model_validate({**s, "reason": req.reason, "duration": duration}) for s in scopes]
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        commands = [controls.prepare(act, ask, action) for ask in asks]
        if req.queue_names:
            act.name(queue=",".join(req.queue_names)[:1000])
        await act.write([r for cmd in commands for r in placed(cmd)])
        return str(uuid.UUID(commands[0].id))

    async def body(request: Request, model: type[KumoRequest] | type[IdRequest] | type[RebindV1Request]) -> Any:
        try:
            return model.model_validate(await read_json(request, MAX_BODY))
        except ValidationError as exc:
            raise from_validation_error(exc) from None

    @router.post(
        "/api/admin/suspend/v1",
        response_model=IdAnswer,
        responses=errors,
        openapi_extra=api.json_body(SuspendV1Request, example={"domain": "example.com", "reason": "blocklisted"}),
    )
    async def suspend(request: Request) -> IdAnswer:
        async with auditor.action(request, "suspend") as act:
            act.who = controls.principal(request)
            return IdAnswer(id=await control(act, await body(request, SuspendV1Request), "suspend"))

    @router.get("/api/admin/suspend/v1", response_model=list[SuspendV1Entry], responses=api.problems(401))
    async def suspensions(request: Request) -> list[SuspendV1Entry]:
        who = controls.principal(request)
        return [SuspendV1Entry(**_entry(s, clock())) for s in _controls(view, who, "suspended")]

    @router.delete(
        "/api/admin/suspend/v1",
        response_model=Empty,
        responses=api.problems(400, 401, 403, (404, "No suspension by that id is visible to this API key"), 413, 422),
        openapi_extra=api.json_body(IdRequest),
    )
    async def resume(request: Request) -> Empty:
        async with auditor.action(request, "resume") as act:
            who = act.who = controls.principal(request)
            wanted = await body(request, IdRequest)
            act.set(id=wanted.id)
            found = [s for s in _controls(view, who, "suspended") if s.id == wanted.id.hex]
            if not found:
                raise Problem(404, "Not found", f"no suspension {wanted.id} visible to this API key")
            s = found[0]
            ask = ScopeRequest(queue=s.queue, tenant=s.tenant, campaign=s.campaign, domain=s.domain)
            await act.write(placed(controls.prepare(act, ask, "resume")))
            return Empty()

    @router.post(
        "/api/admin/bounce/v1",
        response_model=BounceV1Answer,
        responses=errors,
        openapi_extra=api.json_body(BounceV1Request, example={"campaign": "spring", "reason": "sent by mistake"}),
    )
    async def bounce(request: Request) -> BounceV1Answer:
        async with auditor.action(request, "bounce") as act:
            act.who = controls.principal(request)
            ident = await control(act, await body(request, BounceV1Request), "cancel")
            return BounceV1Answer(id=ident, bounced={}, total_bounced=0)

    @router.get("/api/admin/bounce/v1", response_model=list[BounceV1Entry], responses=api.problems(401))
    async def bounces(request: Request) -> list[BounceV1Entry]:
        who = controls.principal(request)
        return [
            BounceV1Entry(**_entry(s, clock()), routing_domain=None, bounced={}, total_bounced=0)
            for s in _controls(view, who, "bounce")
        ]

    @router.post(
        "/api/admin/rebind/v1",
        response_model=Empty,
        responses=errors,
        openapi_extra=api.json_body(
            RebindV1Request,
            example={"tenant": "acme", "campaign": "spring", "reason": "warm pool", "data": {"egress_pool": "warm"}},
        ),
    )
    async def rebind(request: Request) -> JSONResponse:
        """kumod's `{}` once the operation is written; its result (the messages moved) is read from the
        `Location`, GET /api/queue/operations/{id}, once stage 1 applied it."""
        async with auditor.action(request, "rebind") as act:
            who = act.who = controls.principal(request)
            req = await body(request, RebindV1Request)
            operation = rebind_operation(req, acting_tenant(who, req.tenant))
            answer = await operations.run(act, operation, wait=0, status=200)
            return JSONResponse({}, headers={"Location": f"/api/queue/operations/{answer['id']}"})

    @router.get("/api/admin/inspect-message/v1", response_model=InspectMessageV1, responses=api.problems(401, 404, 422))
    async def inspect(
        request: Request,
        id: Annotated[str, Query(min_length=1, max_length=255, description="The transaction id")],
        want_body: bool = False,
    ) -> InspectMessageV1:
        """KumoMTA's message inspection, from the transaction's status; `want_body` is accepted, no body is sent."""
        who = controls.principal(request)
        status = statuses.get(id)
        if status is None or not who.may_see(status.tenant):
            raise Problem(404, "Not found", f"no message {id!r} visible to this API key")
        meta = {"queue": status.queue, "status": status.status, "message_id": status.message_id}
        meta |= {k: v for k, v in (("tenant", status.tenant), ("campaign", status.campaign)) if v is not None}
        return InspectMessageV1(
            id=status.id,
            message=InspectedMessage(
                sender=status.sender,
                recipient=status.recipient,
                meta=meta,
                due=status.next_attempt_at,
                num_attempts=status.num_attempts,
                scheduling=None,
            ),
        )

    return router


def _controls(view: CapacityView, who: Principal, state: str) -> list[QueueSuspension]:
    """The controls of `state` in force that the key may see, once each (a command for every partition is
    published by each)."""
    seen: dict[str, QueueSuspension] = {}
    for stats in view.stats.values():
        for s in stats.suspensions:
            if s.state == state and who.may_see(s.tenant):
                seen.setdefault(s.id, s)
    return sorted(seen.values(), key=lambda s: (s.since, s.id))


def _entry(s: QueueSuspension, now: datetime) -> dict[str, Any]:
    left = None if s.until is None else _humantime(max(s.until - now, timedelta(0)))
    return {
        "id": str(uuid.UUID(s.id)) if _is_uuid(s.id) else s.id,
        "domain": s.domain,
        "campaign": s.campaign,
        "tenant": s.tenant,
        "queue": s.queue,
        "reason": s.reason,
        "duration": left,
    }


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _humantime(span: timedelta) -> str:
    """As KumoMTA writes a duration: '1h 59m 3s' (whole seconds; '0s' when none is left)."""
    seconds = int(span.total_seconds())
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m"), (seconds % 60, "s")]
    return " ".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
