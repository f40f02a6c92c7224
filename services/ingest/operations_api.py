"""The queue operations of the operator model (email-queue-model.md §2.3): POST /api/queue/operations with a
`QueueOperation` (suspend, resume, rebind, bounce, retry, cancel, purge, set_priority; a scope or message ids),
answered with its `QueueOperationResult`; GET /api/queue/operations/{id} reads a result again.

The operation travels as a QueueOperation record to scheduler stage 1, which owns the messages: to the tenant's
partition for a tenant's scope, to every partition for an admin's scope without a tenant, and for message ids one
record per partition owning some of them (found by their route key). Each partition answers on mail.queue-results
once it has applied the operation to all it held (`OperationView`); the route waits up to `wait` seconds for all of
them (200, done), else answers what came so far (202, done false: read it again by id). Audited like every control.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from mailstream.config.model import Config
from mailstream.core.clock import Clock
from mailstream.core.partitioner import partition_of
from mailstream.core.queue_name import QueueName, QueueNameError
from mailstream.core.queue_scope import QueueScope
from mailstream.events.records import QueueOperation, QueueOperationType, Record
from mailstream.events.topics import QUEUE_COMMANDS, TopicSpec, route_key
from mailstream.ingest import api_models as api
from mailstream.ingest.audit import Action, Auditor, partition_keys
from mailstream.ingest.auth import Principal
from mailstream.ingest.operation_view import OperationView, result
from mailstream.ingest.problems import Problem, read_json
from mailstream.ingest.queue_api import (
    DEFAULT_BOUNCE,
    MAX_BODY,
    Name,
    QueueControls,
    Reason,
    SuspendRequest,
    _admin_controlled,
    _issuer,
    _parse,
)
from mailstream.ingest.status_view import StatusView
from mailstream.intake.capacity_view import CapacityView

MAX_IDS = 1000
DEFAULT_WAIT = 10.0
MAX_WAIT = 30.0
SCOPED_ONLY = {"suspend", "resume", "bounce"}  # take a duration (a control on a scope)
Records = list[tuple[TopicSpec[Any], str, Record]]


class OperationParameters(BaseModel):
    """The operation's `metadata`: what rebind, set_priority and a scope's suspend or bounce take."""

    model_config = ConfigDict(extra="forbid")
    queue: str | None = Field(default=None, min_length=1, max_length=255, description="rebind: the queue to move to")
    egress_pool: str | None = Field(default=None, min_length=1, max_length=255, description="rebind: the pool")
    priority: StrictInt | None = Field(default=None, ge=0, le=10, description="set_priority: 0 to 10")
    duration: Any = Field(default=None, description="suspend or bounce of a scope: '2h' or seconds")


class OperationRequest(BaseModel):
    """QueueOperation: a scope (`queue_name` and/or tenant, campaign, domain) or `message_ids`, not both."""

    model_config = ConfigDict(extra="forbid")
    operation: QueueOperationType
    queue_name: str | None = Name
    tenant: str | None = Name
    campaign: str | None = Name
    domain: str | None = Name
    message_ids: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(default=[], max_length=MAX_IDS)
    reason: str | None = Reason
    metadata: OperationParameters = Field(default_factory=OperationParameters)

    @model_validator(mode="after")
    def _consistent(self) -> OperationRequest:
        scoped = any(v is not None for v in (self.queue_name, self.tenant, self.campaign, self.domain))
        if scoped == bool(self.message_ids):
            raise ValueError("name a scope (queue_name, tenant, campaign, domain) or message_ids, not both")
        m, op = self.metadata, self.operation
        if op == "bounce" and not self.reason:
            raise ValueError("bounce needs a reason")
        if op == "set_priority" and m.priority is None:
            raise ValueError("set_priority needs metadata.priority (0 to 10)")
        if op == "rebind" and m.queue is None and m.egress_pool is None:
            raise ValueError("rebind needs metadata.queue or metadata.egress_pool")
        if m.duration is not None and (op not in SCOPED_ONLY - {"resume"} or not scoped):
            raise ValueError("metadata.duration is for suspend or bounce of a scope")
        return self


def _duration(value: Any) -> timedelta | None:
    """Parsed as the suspend route parses it (its errors told the same way)."""
    return _parse(SuspendRequest, {"tenant": "-", "duration": value}).duration


class QueueOperations:
    """Sends a QueueOperation to the stage 1 partitions owning its messages and answers its QueueOperationResult:
    POST /api/queue/operations, and KumoMTA's POST /api/admin/rebind/v1 (kumo_admin) mapped onto it."""

    def __init__(
        self, config: Config, capacity: CapacityView, statuses: StatusView, results: OperationView, clock: Clock
    ) -> None:
        self.controls = QueueControls(config, capacity, clock)
        self.pools = {p.name for p in config.egress.pools}
        self.capacity, self.statuses, self.results, self.clock = capacity, statuses, results, clock

    def target(self, who: Principal, req: OperationRequest) -> None:
        """A rebind's destination, checked against the configuration and the caller's rights."""
        m = req.metadata
        if m.egress_pool is not None and m.egress_pool not in self.pools:
            raise Problem(422, "Unprocessable", f"metadata.egress_pool: no pool {m.egress_pool!r} is configured")
        if m.queue is None:
            return
        try:
            name = QueueName.parse(m.queue)
        except QueueNameError as exc:
            raise Problem(422, "Unprocessable", f"metadata.queue: {exc}") from None
        if name.tenant is None:
            raise Problem(422, "Unprocessable", "metadata.queue: a rebind keeps the tenant: name a tenant's queue")
        if not who.admin and name.tenant != who.tenant:
            raise Problem(403, "Forbidden", "metadata.queue: not a queue of this API key's tenant")

    def by_ids(self, op: QueueOperation, who: Principal, errors: list[str]) -> tuple[Records, int]:
        """One record per partition owning some of the named messages (those this key may see, not final)."""
        groups: dict[int, tuple[str, list[str]]] = {}
        for tx_id in dict.fromkeys(op.message_ids):
            status = self.statuses.get(tx_id)
            if status is None or not who.may_see(status.tenant):
                errors.append(f"{tx_id} is not a transaction visible to this API key")
            elif status.is_final:
                errors.append(f"{tx_id} is already {status.status}")
            else:
                key = route_key(status.tenant, status.queue)
                groups.setdefault(partition_of(key.encode(), QUEUE_COMMANDS.partitions), (key, []))[1].append(tx_id)
        n = len(groups)
        records: Records = [
            (QUEUE_COMMANDS, key, op.model_copy(update={"message_ids": tuple(ids), "expected": n}))
            for key, ids in groups.values()
        ]
        return records, n

    @staticmethod
    def by_scope(op: QueueOperation) -> tuple[Records, int]:
        if op.tenant is not None:
            return [(QUEUE_COMMANDS, route_key(op.tenant, op.queue or "*"), op)], 1
        keys = partition_keys(route_key(None, op.queue or "*"), QUEUE_COMMANDS.partitions)
        op = op.model_copy(update={"expected": len(keys)})
        return [(QUEUE_COMMANDS, k, op) for k in keys], len(keys)

    async def run(self, act: Action, req: OperationRequest, wait: float, status: int = 202) -> dict[str, Any]:
        """The operation written with its audit record (of `status`, the route's answer when it does not wait),
        and its result once every partition answered or `wait` seconds passed (`done` says which)."""
        who = act.who = self.controls.principal(act.request)
        self.target(who, req)
        now = self.clock()
        tenant = req.tenant if who.admin else self.controls.tenant_filter(who, req.tenant)[0]
        if req.message_ids:
            tenant = None if who.admin else who.tenant
        else:
            scope = QueueScope(queue=req.queue_name, tenant=tenant, campaign=req.campaign, domain=req.domain)
            if (
                not who.admin
                and req.operation in SCOPED_ONLY
                and _admin_controlled(self.capacity, scope, bounce=req.operation == "bounce")
            ):
                raise Problem(403, "Forbidden", "an admin set this control: only an admin may change it")
        duration = _duration(req.metadata.duration)
        if req.operation == "bounce" and not req.message_ids and duration is None:
            duration = DEFAULT_BOUNCE
        m = req.metadata
        op = QueueOperation(
            id=uuid.uuid4().hex,
            operation=req.operation,
            queue=req.queue_name,
            tenant=tenant,
            campaign=req.campaign,
            domain=req.domain,
            message_ids=tuple(req.message_ids),
            reason=req.reason,
            to_queue=m.queue if req.operation == "rebind" else None,
            to_pool=m.egress_pool if req.operation == "rebind" else None,
            priority=m.priority if req.operation == "set_priority" else None,
            until=now + duration if duration is not None else None,
            issued_at=now,
            issued_by=_issuer(who),
        )
        act.name(queue=op.queue, tenant=op.tenant, campaign=op.campaign, domain=op.domain)
        act.reason = op.reason
        act.set(
            messages=len(op.message_ids) or None,
            to_queue=op.to_queue,
            to_pool=op.to_pool,
            priority=op.priority,
            duration=duration,
        )
        act.command_ids.append(op.id)
        errors: list[str] = []
        records, expected = self.by_ids(op, who, errors) if op.message_ids else self.by_scope(op)
        await act.write(records, status=status)
        outcomes = await self.results.wait(op.id, expected, wait) if expected else []
        return result(op.operation, op.id, outcomes, expected, now, errors)


def operations_router(
    config: Config, capacity: CapacityView, statuses: StatusView, results: OperationView, clock: Clock, auditor: Auditor
) -> APIRouter:
    operations = QueueOperations(config, capacity, statuses, results, clock)
    controls = operations.controls
    router = APIRouter()

    example = {"operation": "rebind", "queue_name": "spring:acme@example.com", "metadata": {"egress_pool": "warm"}}

    @router.post(
        "/api/queue/operations",
        response_model=api.OperationResult,
        responses={
            202: {"description": "Not every partition answered within `wait`: read it again by id"},
            **api.problems(400, 401, 403, 413, 422, 503),
        },
        openapi_extra=api.json_body(OperationRequest, example=example),
    )
    async def post_operation(
        request: Request,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for the result")] = DEFAULT_WAIT,
    ) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        name = body.get("operation") if isinstance(body, dict) else None
        async with auditor.action(request, name if isinstance(name, str) and len(name) < 20 else "operation") as act:
            act.who = controls.principal(request)
            answer = await operations.run(act, _parse(OperationRequest, body), wait)
            return JSONResponse(status_code=200 if answer["done"] else 202, content=answer)

    @router.get("/api/queue/operations/{op_id}", response_model=api.OperationResult, responses=api.problems(401, 404))
    async def get_operation(op_id: str, request: Request) -> JSONResponse:
        who = controls.principal(request)
        outcomes = results.of(op_id)
        if not outcomes or not who.may_see(outcomes[0].tenant):
            raise Problem(404, "Not found", f"no operation {op_id!r} visible to this API key (results are kept a day)")
        first = outcomes[0]
        answer = result(first.operation, op_id, outcomes, first.expected, min(o.completed_at for o in outcomes))
        return JSONResponse(answer)

    return router
