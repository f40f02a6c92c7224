"""GET /api/messages (search: every QueueFilter field, keyset cursor pages, every sort both ways),
GET /api/messages/{id} (one message with its attempts), GET /api/queue/metrics and GET /api/queue/metrics/timeline
(deliveries and bounces over time, the dashboard's chart).

A tenant's key is held to its own tenant: the filter's tenant is forced from the key (naming another is 403).
Reads run on worker threads, each with its own SQLite connection, so the event loop never waits on a query.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam

from mailstream.config.model import Config
from mailstream.core.bounce_classify import BounceType
from mailstream.core.clock import Clock
from mailstream.events.records import MessageStatus, QueueState
from mailstream.ingest.auth import KeyRing
from mailstream.ingest.problems import PROBLEM_JSON, Problem
from mailstream.ingest.read_model import models
from mailstream.ingest.read_model.metrics import delivery_timeline, queue_metrics
from mailstream.ingest.read_model.query import (
    Cursor,
    QueryError,
    QueueFilter,
    SortField,
    SortOrder,
    decode_cursor,
)
from mailstream.ingest.read_model.store import MessageStore, QueryTimeout
from mailstream.ingest.tenant_rights import acting_tenant

METRICS_TTL = 5.0  # seconds a scope's metrics are reused: each costs a few scans of the table
MAX_OFFSET = 10_000  # deeper pages go by cursor
Name = Annotated[str | None, Query(min_length=1, max_length=255)]
Names = Annotated[list[str], Query(max_length=50)]
Small = Annotated[int | None, Query(ge=0, le=1_000_000)]
Size = Annotated[int | None, Query(ge=0, le=2**53)]
_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_PROBLEM = {"content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "The cursor is not one this API gave, or was made for another sort",
        401: "No API key, or an unknown one",
        403: "A tenant's key named another tenant",
        404: "No message by that id is visible to this API key",
        422: "A parameter is invalid (an inverted range, an unknown sort field or status): `errors` names it",
        503: "The read model took too long to answer; retry",
    }
    return {c: {"description": text[c], **_PROBLEM} for c in codes}


def _utc(at: datetime | None) -> datetime | None:
    return at if at is None or at.tzinfo is not None else at.replace(tzinfo=UTC)


def _bad(exc: QueryError) -> Problem:
    status = 400 if exc.field == "cursor" else 422
    return Problem(status, "Invalid request", str(exc), [{"field": exc.field, "message": exc.message}])


def read_model_router(config: Config, store: MessageStore, clock: Clock) -> APIRouter:
    router = APIRouter()
    keys = KeyRing(config.ingest.api_keys)
    max_limit = config.ingest.read_model_max_page
    cache: dict[tuple[str | None, ...], tuple[float, dict[str, Any]]] = {}

    async def run(fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except QueryTimeout as exc:
            raise Problem(503, "Service unavailable", str(exc), headers={"Retry-After": "1"}) from None
        except QueryError as exc:
            raise _bad(exc) from None

    @router.get(
        "/api/messages",
        response_model=models.MessagePage,
        responses=_problems(400, 401, 403, 422, 503),
        summary="Search messages",
    )
    async def search(
        request: Request,
        status: Annotated[list[MessageStatus], Query(max_length=9)] = [],  # noqa: B006 - FastAPI copies it
        queue_state: Annotated[list[QueueState], Query(max_length=4)] = [],  # noqa: B006
        domain: Name = None,
        domains: Names = [],  # noqa: B006
        sender: Name = None,
        recipient: Name = None,
        routing_domain: Name = None,
        campaign_id: Name = None,
        tenant_id: Name = None,
        pool_name: Name = None,
        queue_name: Name = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        scheduled_after: datetime | None = None,
        scheduled_before: datetime | None = None,
        search_query: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
        tags: Names = [],  # noqa: B006
        min_attempts: Small = None,
        max_attempts: Small = None,
        bounce_type: BounceType | None = None,
        min_size_bytes: Size = None,
        max_size_bytes: Size = None,
        priority: Annotated[int | None, Query(ge=0, le=10)] = None,
        limit: Annotated[int, Query(ge=1, le=1_000_000)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        sort_by: SortField = "created_at",
        sort_order: SortOrder = "desc",
    ) -> models.MessagePage:
        who = keys.authenticate(request.headers.get("authorization"))
        if limit > max_limit:
            raise _bad(QueryError("limit", f"is at most {max_limit}"))
        if cursor is not None and offset:
            raise _bad(QueryError("offset", "cannot be combined with cursor"))
        f = QueueFilter(
            status=tuple(status),
            queue_state=tuple(queue_state),
            domains=tuple(([domain] if domain else []) + domains),
            sender=sender,
            recipient=recipient,
            routing_domain=routing_domain,
            campaign_id=campaign_id,
            tenant_id=acting_tenant(who, tenant_id, "tenant_id"),
            pool_name=pool_name,
            queue_name=queue_name,
            created_after=_utc(created_after),
            created_before=_utc(created_before),
            scheduled_after=_utc(scheduled_after),
            scheduled_before=_utc(scheduled_before),
            search_query=search_query,
            tags=tuple(tags),
            min_attempts=min_attempts,
            max_attempts=max_attempts,
            bounce_type=bounce_type,
            min_size_bytes=min_size_bytes,
            max_size_bytes=max_size_bytes,
            priority=priority,
        )
        try:
            f.check()
            after = decode_cursor(cursor, sort_by, sort_order) if cursor is not None else None
        except QueryError as exc:
            raise _bad(exc) from None
        rows = await run(store.page, f, sort_by, sort_order, limit, after, offset)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            next_cursor = Cursor(sort_by, sort_order, rows[-1][sort_by], rows[-1]["seq"]).encode()
        return models.MessagePage(
            messages=[models.MessageQueueItem(**models.item(r)) for r in rows],
            next_cursor=next_cursor,
            limit=limit,
            sort_by=sort_by,
            sort_order=sort_order,
        )

    @router.get(
        "/api/messages/{message_id}",
        response_model=models.MessageDetail,
        responses=_problems(401, 404, 422, 503),
        summary="One message with its attempts",
    )
    async def message(message_id: Annotated[str, PathParam(max_length=255)], request: Request) -> models.MessageDetail:
        who = keys.authenticate(request.headers.get("authorization"))
        row = await run(store.get, message_id)
        if row is None or not who.may_see(row["tenant_id"]):
            raise Problem(404, "Not found", f"no message {message_id!r} visible to this API key")
        return models.detail(row)

    @router.get(
        "/api/queue/metrics",
        response_model=models.QueueMetrics,
        responses=_problems(401, 403, 422, 503),
        summary="Queue metrics and domain health",
    )
    async def metrics(
        request: Request,
        tenant_id: Name = None,
        campaign_id: Name = None,
        queue_name: Name = None,
    ) -> dict[str, Any]:
        who = keys.authenticate(request.headers.get("authorization"))
        scope = QueueFilter(
            tenant_id=acting_tenant(who, tenant_id, "tenant_id"), campaign_id=campaign_id, queue_name=queue_name
        )
        key = (scope.tenant_id, campaign_id, queue_name)
        now = clock()
        held = cache.get(key)
        if held is not None and 0 <= now.timestamp() - held[0] < METRICS_TTL:
            return held[1]
        found: dict[str, Any] = await run(queue_metrics, store, scope, now, config.ingest.read_model_top_domains)
        if len(cache) > 1000:
            cache.clear()
        cache[key] = (now.timestamp(), found)
        return found

    @router.get(
        "/api/queue/metrics/timeline",
        response_model=models.DeliveryTimeline,
        responses=_problems(401, 403, 422, 503),
        summary="Deliveries and bounces over time",
    )
    async def timeline(
        request: Request,
        tenant_id: Name = None,
        campaign_id: Name = None,
        queue_name: Name = None,
        hours: Annotated[int, Query(ge=1, le=7 * 24, description="How far back")] = 6,
        points: Annotated[int, Query(ge=2, le=500, description="Buckets over that span")] = 60,
    ) -> dict[str, Any]:
        who = keys.authenticate(request.headers.get("authorization"))
        scope = QueueFilter(
            tenant_id=acting_tenant(who, tenant_id, "tenant_id"), campaign_id=campaign_id, queue_name=queue_name
        )
        found: dict[str, Any] = await run(delivery_timeline, store, scope, clock(), timedelta(hours=hours), points)
        return found

    return router
