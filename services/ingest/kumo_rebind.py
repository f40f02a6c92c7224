"""KumoMTA's RebindV1Request (POST /api/admin/rebind/v1) as mailstream's rebind QueueOperation (pure).

kumod applies `data` to each matched message's meta and places it again by the queue that meta names; a rebind here
moves to one named queue of the same tenant and recipient domain, and/or to an egress pool. So `data` may hold:
- `queue`: the scheduled queue to move to (`campaign:tenant@domain[!routing_domain]`);
- `routing_domain`: with `queue`, its routing domain (added to a name without one; a different one is refused);
  alone, the queue the scope names is meant: tenant (a tenant key's own), campaign and domain must all be given;
- `egress_pool`: mailstream's, the pool to send through (kumod takes the pool from the queue's config).
Any other meta name is refused (422), as are `trigger_rebind_event: true` (no policy event runs here: `data` is
applied as meta, kumod's default), `always_flush: true` (a rebound message keeps its due time here; a `retry`
operation makes deferred ones due now) and a `routing_domain` criterion (scopes are not split by routing domain).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailstream.core.queue_name import QueueName, QueueNameError
from mailstream.ingest.operations_api import OperationRequest
from mailstream.ingest.problems import invalid
from mailstream.ingest.queue_api import _parse

DATA_KEYS = ("queue", "routing_domain", "egress_pool")
Name = Field(default=None, min_length=1, max_length=255)


class KumoCriteria(BaseModel):
    """What every kumod admin request names: why, and the domain, campaign and tenant of the queues concerned."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)
    domain: str | None = Name
    campaign: str | None = Name
    tenant: str | None = Name


class RebindV1Request(KumoCriteria):
    routing_domain: None = Field(default=None, description="Not supported: must be absent")
    data: dict[str, str] = Field(max_length=len(DATA_KEYS), description=f"The new meta: {', '.join(DATA_KEYS)}")
    always_flush: bool = Field(default=False, description="Not supported: must be false")
    suppress_logging: bool = Field(default=False, description="Either: no AdminRebind log record is written here")
    trigger_rebind_event: bool = Field(default=False, description="Not supported: must be false")

    @field_validator("data")
    @classmethod
    def _known(cls, data: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(data) - set(DATA_KEYS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: a rebind here sets only {', '.join(DATA_KEYS)}")
        if not data:
            raise ValueError(f"name where to: {', '.join(DATA_KEYS)}")
        if any(not 0 < len(v) <= 255 or v != v.strip() for v in data.values()):
            raise ValueError("a value is 1 to 255 characters without surrounding spaces")
        return data

    @field_validator("always_flush")
    @classmethod
    def _no_flush(cls, value: bool) -> bool:
        if value:
            raise ValueError("a rebound message keeps its due time here: retry makes deferred ones due now")
        return value

    @field_validator("trigger_rebind_event")
    @classmethod
    def _no_event(cls, value: bool) -> bool:
        if value:
            raise ValueError("mailstream has no rebind_message event: data is applied as meta")
        return value

    @model_validator(mode="after")
    def _scoped(self) -> RebindV1Request:
        if self.domain is None and self.campaign is None and self.tenant is None:
            raise ValueError("name a scope (domain, campaign, tenant): mailstream does not rebind every queue")
        return self


def rebind_operation(req: RebindV1Request, tenant: str | None) -> OperationRequest:
    """The rebind QueueOperation `req` asks for; `tenant` is the one it acts on (the key's own, or the admin's
    `req.tenant`), which a queue named from the scope takes."""
    queue, routing = req.data.get("queue"), req.data.get("routing_domain")
    if routing is not None:
        queue = _with_routing(queue, routing, tenant, req)
    body = {
        "operation": "rebind",
        "tenant": req.tenant,
        "campaign": req.campaign,
        "domain": req.domain,
        "reason": req.reason,
        "metadata": {"queue": queue, "egress_pool": req.data.get("egress_pool")},
    }
    return _parse(OperationRequest, body)


def _with_routing(queue: str | None, routing: str, tenant: str | None, req: RebindV1Request) -> str:
    try:
        if queue is None:
            if tenant is None or req.campaign is None or req.domain is None:
                why = "without data.queue, give tenant, campaign and domain: they name the queue moved to"
                raise invalid([("data.routing_domain", why)])
            name = QueueName(domain=req.domain.lower(), tenant=tenant, campaign=req.campaign)
        else:
            name = QueueName.parse(queue)
        moved = QueueName(name.domain, name.tenant, name.campaign, routing.lower())
    except QueueNameError as exc:
        raise invalid([("data", str(exc))]) from None
    if name.routing_domain not in (None, moved.routing_domain):
        raise invalid([("data.routing_domain", "data.queue names another routing domain")])
    return str(moved)
