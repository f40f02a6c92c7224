"""HTTP API: KumoMTA-style injection and transaction status as a long-running operation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mailstream.config.model import IngestConfig
from mailstream.core.clock import Clock
from mailstream.events.kafka import KafkaUnavailable
from mailstream.events.records import TransactionStatus
from mailstream.ingest.auth import KeyRing, Principal, key_id
from mailstream.ingest.idempotency import Answers, AnswerStore
from mailstream.ingest.inject import Injector, unavailable
from mailstream.ingest.limits import KeyLimit, KeyLimits, too_many
from mailstream.ingest.problems import Problem, from_request_validation
from mailstream.ingest.render_pool import RenderPool
from mailstream.ingest.status_view import StatusView, TooManyWaiters
from mailstream.intake.submission import Submitter

MAX_WAIT_SECONDS = 30.0


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

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(_: Request, exc: RequestValidationError) -> Response:
        return from_request_validation(exc.errors()).response()

    @app.exception_handler(KafkaUnavailable)
    async def _kafka_down(_: Request, exc: KafkaUnavailable) -> Response:
        return unavailable(f"the event log is not accepting writes: {exc}").response()

    def principal(request: Request) -> Principal:
        return keys.authenticate(request.headers.get("authorization"))

    @app.post("/api/inject/v1")
    async def inject(request: Request) -> Response:
        who = principal(request)
        with limits.inject(who):
            return await injector.handle(request, who)

    @app.get("/api/transactions/{tx_id}")
    async def transaction(tx_id: str, request: Request, wait: float = 0.0) -> Response:
        """`wait` seconds (≤30) with If-None-Match: "<version>" long-polls for a newer version."""
        who = principal(request)
        etag = request.headers.get("if-none-match", "").strip('"')
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

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if not view.caught_up.is_set():
            return Problem(503, "Not ready", "transaction status view is catching up").response()
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
