"""HTTP API: KumoMTA-style injection and transaction status as a long-running operation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from mailstream.config.model import IngestConfig
from mailstream.core.clock import Clock
from mailstream.events.kafka import KafkaUnavailable
from mailstream.events.records import TransactionStatus
from mailstream.ingest import api_models as api
from mailstream.ingest.auth import KeyRing, Principal, key_id
from mailstream.ingest.idempotency import Answers, AnswerStore
from mailstream.ingest.inject import Injector, unavailable
from mailstream.ingest.inject_request import InjectRequest
from mailstream.ingest.koukan_api import koukan_router
from mailstream.ingest.limits import KeyLimit, KeyLimits, too_many
from mailstream.ingest.problems import Problem, from_request_validation
from mailstream.ingest.render_pool import RenderPool
from mailstream.ingest.status_view import StatusView, TooManyWaiters
from mailstream.intake.submission import Submitter

MAX_WAIT_SECONDS = 30.0
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "1 to 255 visible ASCII characters: a retry with the same key and body creates nothing twice",
    "schema": {"type": "string"},
}
_ETAG = {"ETag": {"description": 'the version, quoted ("7")', "required": True, "schema": {"type": "string"}}}


def transaction_json(status: TransactionStatus) -> dict[str, Any]:
    body = status.model_dump(mode="json")
    body["name"] = f"transactions/{status.id}"
    body["done"] = status.is_final
    body["last_response"] = body["attempts"][-1]["response"] if body["attempts"] else None
    return body


def create_app(
    config: IngestConfig,
    submitter: Submitter,
    view: StatusView,
    clock: Clock,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    routers: Sequence[APIRouter] = (),
    render_pool: RenderPool | None = None,
    answers: Answers | None = None,
) -> FastAPI:
    """`render_pool` and `answers` default to ones made from `config`; their owner (the lifespan, a test's harness)
    closes them and runs the answers' tail."""
    keys = KeyRing(config.api_keys)
    app = FastAPI(title="mailstream", version="0.1.0", lifespan=lifespan)
    api.install(app)
    pool = render_pool or RenderPool(config.template_workers, config.template_memory_limit)
    answers = answers or Answers(AnswerStore(config.status_db), clock)
    injector = Injector(config, submitter, clock, pool, answers)
    limits = KeyLimits(
        {
            key_id(k): KeyLimit(
                k.rate_limit or config.rate_limit,
                k.max_requests_in_progress or config.max_requests_in_progress,
                config.max_waiters_per_key,
            )
            for k in config.api_keys
        },
        clock,
    )
    app.state.render_pool, app.state.answers = pool, answers
    for router in routers:
        app.include_router(router)
    app.include_router(koukan_router(config, submitter, view, clock, keys, limits, answers))  # Koukan's REST API

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(_: Request, exc: RequestValidationError) -> Response:
        return from_request_validation(exc.errors()).response()

    @app.exception_handler(HTTPException)
    async def _routing(_: Request, exc: HTTPException) -> Response:
        """No such path (404) or method (405, with Allow): a problem like every other error."""
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        return Problem(exc.status_code, title, str(exc.detail), headers=dict(exc.headers or {})).response()

    @app.exception_handler(KafkaUnavailable)
    async def _kafka_down(_: Request, exc: KafkaUnavailable) -> Response:
        return unavailable(f"the event log is not accepting writes: {exc}").response()

    def principal(request: Request) -> Principal:
        return keys.authenticate(request.headers.get("authorization"))

    @app.post(
        "/api/inject/v1",
        response_model=api.InjectAnswer,
        responses={
            200: {
                "links": api.links(
                    "$response.body#/transactions/0/id",
                    ("/api/transactions/{tx_id}", "get", "tx_id"),
                    ("/api/transactions/{tx_id}/cancel", "post", "tx_id"),
                )
            },
            **api.problems(
                (400, "The body is not JSON, or the Idempotency-Key is malformed"),
                401,
                (409, "A request with this Idempotency-Key is still being written: retry"),
                413,
                (422, "A field is invalid (`errors` names each), or the Idempotency-Key was used for another body"),
                429,
                503,
                retry_after=(409,),
            ),
        },
        openapi_extra={**api.json_body(InjectRequest, example=api.INJECT_EXAMPLE), "parameters": [_IDEMPOTENCY_KEY]},
    )
    async def inject(request: Request) -> Response:
        who = principal(request)
        with limits.inject(who):
            return await injector.handle(request, who)

    @app.get(
        "/api/transactions/{tx_id}",
        response_model=api.Transaction,
        responses={
            200: {"headers": _ETAG},
            304: {"description": "The version in If-None-Match is still the newest", "headers": _ETAG},
            **api.problems(401, 404, 422, (429, "This API key's cap on waiting long-polls is reached")),
        },
    )
    async def transaction(
        tx_id: str,
        request: Request,
        wait: float = 0.0,
        if_none_match: Annotated[str, Header(alias="If-None-Match")] = "",
    ) -> Response:
        """`wait` seconds (≤30) with If-None-Match: "<version>" long-polls for a newer version."""
        who = principal(request)
        etag = if_none_match.strip('"')
        status = view.get(tx_id)
        if etag.isdigit() and wait > 0 and status is not None and who.may_see(status.tenant):
            with limits.waiter(who):
                try:
                    status = await view.wait_newer(tx_id, int(etag), min(wait, MAX_WAIT_SECONDS))
                except TooManyWaiters as exc:
                    raise too_many(str(exc), timedelta(seconds=1)) from None
        if status is None or not who.may_see(status.tenant):
            raise Problem(404, "Not found", f"no transaction {tx_id!r} visible to this API key")
        headers = {"ETag": f'"{status.version}"'}
        if etag == str(status.version):
            return Response(status_code=304, headers=headers)
        return JSONResponse(transaction_json(status), headers=headers)

    @app.get("/healthz", response_model=api.Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=api.Ready, responses=api.problems((503, "The status view is catching up")))
    async def readyz() -> Response:
        if not view.caught_up.is_set():
            detail = "transaction status view is catching up"
            return Problem(503, "Not ready", detail, headers={"Retry-After": "1"}).response()
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=PlainTextResponse, responses={200: {"description": "Prometheus metrics"}})
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
