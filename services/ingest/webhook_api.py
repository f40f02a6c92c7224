"""Webhook endpoints by API: POST, GET and DELETE /api/webhooks, and GET /api/webhooks/{id}/attempts.

A tenant's key manages its own endpoints only (another's answer 404, as if they did not exist); an admin key
any, and may register one for every tenant's mail (no `tenant`). Endpoints are records on mail.webhooks, which
the webhooks service tails; those of the configuration file are listed too (`"source": "config"`) but only the
file changes them. The secret is shown once, in the answer to POST.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from mailstream.config.model import Config
from mailstream.config.webhooks import EndpointConfig, EventType, Url, check_retry_for, check_timeout, url_refusal
from mailstream.core.clock import Clock
from mailstream.core.duration import parse_duration
from mailstream.events.producer import EventSink
from mailstream.events.records import ADMIN_ISSUER, WebhookAttempt, WebhookDeleted, WebhookEndpoint
from mailstream.events.topics import WEBHOOKS
from mailstream.ingest import api_models as api
from mailstream.ingest.audit import Auditor
from mailstream.ingest.auth import KeyRing, Principal
from mailstream.ingest.problems import Problem, from_validation_error, invalid, read_json
from mailstream.ingest.tenant_rights import acting_tenant
from mailstream.ingest.webhook_view import WebhookView
from mailstream.intake.submission import DirectWriter

MAX_BODY = 16 * 1024
MAX_ENDPOINTS_PER_TENANT = 20  # each is a consumer group reading all of mail.events (docs/design-decisions.md)


def _duration(value: Any) -> timedelta:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("a duration is a string such as '2h' or a number of seconds")
    try:
        parsed = parse_duration(value)
    except OverflowError:
        raise ValueError("duration too long") from None
    if parsed <= timedelta(0):
        raise ValueError("duration must be positive")
    return parsed


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    url: Url = Field(max_length=2000)
    events: list[EventType] = Field(min_length=1, max_length=8)
    tenant: str | None = Field(default=None, min_length=1, max_length=255)
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    retry_for: Annotated[timedelta, BeforeValidator(_duration), AfterValidator(check_retry_for), api.DURATION] = (
        timedelta(hours=24)
    )
    timeout: Annotated[timedelta, BeforeValidator(_duration), AfterValidator(check_timeout), api.DURATION] = timedelta(
        seconds=10
    )


def _issuer(who: Principal) -> str:
    return ADMIN_ISSUER if who.admin else f"tenant:{who.tenant}"


def endpoint_json(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": endpoint.id,
        "name": endpoint.name,
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "retry_for_seconds": endpoint.retry_for_ms / 1000,
        "timeout_seconds": endpoint.timeout_ms / 1000,
        "created_at": endpoint.created_at.isoformat(),
        "created_by": endpoint.created_by,
        "source": "api",
        "attempts_url": f"/api/webhooks/{endpoint.id}/attempts",
    }
    if with_secret:
        body["secret"] = endpoint.secret
    return body


def configured_json(endpoint: EndpointConfig) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "retry_for_seconds": endpoint.retry_for.total_seconds(),
        "timeout_seconds": endpoint.timeout.total_seconds(),
        "source": "config",
        "attempts_url": f"/api/webhooks/{endpoint.id}/attempts",
    }


def attempt_json(attempt: WebhookAttempt) -> dict[str, Any]:
    body = attempt.model_dump(mode="json", exclude={"endpoint_id", "tenant"})
    body["given_up"] = attempt.outcome == "GIVEN_UP"
    return body


def webhook_router(
    config: Config, view: WebhookView, producer: EventSink, clock: Clock, auditor: Auditor | None = None
) -> APIRouter:
    keys = KeyRing(config.ingest.api_keys)
    audited = auditor or Auditor(DirectWriter(producer), clock)
    configured = {e.id: e for e in config.webhooks.endpoints}
    outbound = config.webhooks.outbound.policy()
    router = APIRouter()

    def principal(request: Request) -> Principal:
        return keys.authenticate(request.headers.get("authorization"))

    def not_found(ident: str) -> Problem:
        return Problem(404, "Not found", f"no webhook endpoint {ident!r} visible to this API key")

    def visible(who: Principal, ident: str) -> dict[str, Any]:
        """The endpoint as JSON, if the key may see it; 404 otherwise."""
        if ident in configured and who.may_see(configured[ident].tenant):
            return configured_json(configured[ident])
        endpoint = view.endpoint(ident)
        if endpoint is None or not who.may_see(endpoint.tenant):
            raise not_found(ident)
        return endpoint_json(endpoint)

    @router.post(
        "/api/webhooks",
        status_code=201,
        response_model=api.CreatedWebhook,
        responses={
            201: {
                "headers": {"Location": {"description": "the endpoint's URL", "schema": {"type": "string"}}},
                "links": api.links(
                    "$response.body#/id",
                    ("/api/webhooks/{ident}", "get", "ident"),
                    ("/api/webhooks/{ident}/attempts", "get", "ident"),
                    ("/api/webhooks/{ident}", "delete", "ident"),
                ),
            },
            **api.problems(400, 401, 403, (409, "The tenant has as many endpoints as it may"), 413, 422, 503),
        },
        openapi_extra=api.json_body(CreateWebhook, example=api.WEBHOOK_EXAMPLE),
    )
    async def create(request: Request) -> JSONResponse:
        async with audited.action(request, "webhook.create") as act:
            who = act.who = principal(request)
            try:
                wanted = CreateWebhook.model_validate(await read_json(request, MAX_BODY))
            except ValidationError as exc:
                raise from_validation_error(exc) from None
            refused = url_refusal(wanted.url, outbound)  # a name is checked as it resolves, on each connection
            if refused is not None:
                raise invalid([("url", refused)])
            tenant = acting_tenant(who, wanted.tenant)
            if sum(1 for e in view.endpoints() if e.tenant == tenant) >= MAX_ENDPOINTS_PER_TENANT:
                raise Problem(
                    409,
                    "Too many endpoints",
                    f"a tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints: delete one first",
                )
            endpoint = WebhookEndpoint(
                id=f"wh_{uuid.uuid4().hex}",
                name=wanted.name,
                tenant=tenant,
                url=wanted.url,
                secret=wanted.secret or f"whsec_{secrets.token_urlsafe(32)}",
                events=tuple(dict.fromkeys(wanted.events)),
                retry_for_ms=int(wanted.retry_for.total_seconds() * 1000),
                timeout_ms=int(wanted.timeout.total_seconds() * 1000),
                created_at=clock(),
                created_by=_issuer(who),
            )
            act.name(tenant=tenant, endpoint=endpoint.id)
            act.set(url=endpoint.url, events=",".join(endpoint.events))  # never its secret
            act.affected = 1
            await act.write([(WEBHOOKS, endpoint.id, endpoint)], status=201)
            view.put(endpoint)
            return JSONResponse(
                endpoint_json(endpoint, with_secret=True),
                status_code=201,
                headers={"Location": f"/api/webhooks/{endpoint.id}"},
            )

    @router.get("/api/webhooks", response_model=api.WebhookEndpoints, responses=api.problems(401))
    async def listing(request: Request) -> JSONResponse:
        who = principal(request)
        found = [configured_json(e) for e in configured.values() if who.may_see(e.tenant)]
        found += [endpoint_json(e) for e in view.endpoints() if who.may_see(e.tenant)]
        return JSONResponse({"endpoints": found})

    @router.get("/api/webhooks/{ident}", response_model=api.WebhookEndpoint, responses=api.problems(401, 404, 422))
    async def one(ident: str, request: Request) -> JSONResponse:
        return JSONResponse(visible(principal(request), ident))

    @router.delete(
        "/api/webhooks/{ident}",
        status_code=204,
        response_class=Response,
        responses={
            204: {"description": "Deleted"},
            **api.problems(401, 404, (409, "The endpoint is defined in the configuration file"), 422, 503),
        },
    )
    async def delete(ident: str, request: Request) -> Response:
        async with audited.action(request, "webhook.delete") as act:
            who = act.who = principal(request)
            act.name(endpoint=ident[:300])
            if visible(who, ident)["source"] == "config":
                raise Problem(
                    409,
                    "Defined in the configuration",
                    f"endpoint {ident!r} is in webhooks.endpoints of the configuration file: remove it there",
                )
            endpoint = view.endpoint(ident)
            if endpoint is None:  # deleted meanwhile
                raise not_found(ident)
            deleted = WebhookDeleted(id=ident, tenant=endpoint.tenant, deleted_at=clock(), deleted_by=_issuer(who))
            act.name(tenant=endpoint.tenant)
            act.affected = 1
            await act.write([(WEBHOOKS, ident, deleted)], status=204)
            view.put(deleted)
            return Response(status_code=204)

    @router.get(
        "/api/webhooks/{ident}/attempts", response_model=api.WebhookAttempts, responses=api.problems(401, 404, 422)
    )
    async def attempts(ident: str, request: Request) -> JSONResponse:
        visible(principal(request), ident)
        return JSONResponse({"endpoint_id": ident, "attempts": [attempt_json(a) for a in view.attempts(ident)]})

    return router
