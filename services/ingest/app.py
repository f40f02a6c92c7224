"""HTTP API: KumoMTA-style injection and transaction status as a long-running operation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mailstream.config.model import IngestConfig
from mailstream.core.clock import Clock
from mailstream.events.kafka import KafkaUnavailable
from mailstream.events.records import TransactionStatus
from mailstream.ingest.auth import KeyRing, Principal
from mailstream.ingest.inject_request import InjectRequest, shared_metadata_errors
from mailstream.ingest.message_builder import (
    GeneratedMessage,
    Limits,
    RecipientFailure,
    expand,
    needs_worker,
    recipient_variables,
    template_sources,
)
from mailstream.ingest.problems import (
    Problem,
    from_request_validation,
    from_validation_error,
    invalid,
    read_json,
)
from mailstream.ingest.render_pool import RenderJob, RenderPool, TemplateRefused
from mailstream.ingest.status_view import StatusView
from mailstream.ingest.templates import ExpansionTooLarge
from mailstream.intake.submission import Outgoing, Submitter, new_transaction_id

REQUESTS = Counter("mailstream_ingest_requests_total", "Injection requests by outcome", ["outcome"])
RECIPIENTS = Counter("mailstream_ingest_recipients_total", "Recipients by result", ["result"])
MAX_WAIT_SECONDS = 30.0
INLINE_RECIPIENTS = 4


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
) -> FastAPI:
    keys = KeyRing(config.api_keys)
    app = FastAPI(title="mailstream", version="0.1.0", lifespan=lifespan)
    pool = render_pool or RenderPool(config.template_workers, config.template_memory_limit)
    app.state.render_pool = pool  # its owner closes it (the lifespan, a test's harness)
    limits = Limits(config.max_message_size, config.expansion_limit)
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
        REQUESTS.labels("unavailable").inc()
        return Problem(
            503,
            "Service unavailable",
            f"the event log is not accepting writes: {exc}",
            headers={"Retry-After": "5"},
        ).response()

    def principal(request: Request) -> Principal:
        return keys.authenticate(request.headers.get("authorization"))

    async def expanded_messages(request: InjectRequest) -> list[GeneratedMessage | RecipientFailure]:
        """Templates that are more than substitutions render in a worker process (render_pool), within the time
        and output bounds; the messages are built here, off the loop for more than a few recipients."""
        rendered = None
        try:
            if needs_worker(request):
                budget = config.template_time_limit.total_seconds()
                rendered = await pool.render(RenderJob(template_sources(request), recipient_variables(request),
                                                       budget, limits.message_bytes, limits.total_bytes))
            build = functools.partial(expand, request, message_id_domain=config.message_id_domain, now=clock(),
                                      make_id=new_transaction_id, rendered=rendered, limits=limits)
            # Building thousands of messages must not stall the loop; a few are cheaper than the thread hop.
            return build() if len(request.recipients) <= INLINE_RECIPIENTS else await run_in_threadpool(build)
        except TemplateRefused as exc:
            REQUESTS.labels("invalid").inc()
            raise invalid([(exc.field, exc.reason)]) from None
        except ExpansionTooLarge as exc:
            REQUESTS.labels("invalid").inc()
            raise Problem(413, "Payload too large", str(exc)) from None

    @app.post("/api/inject/v1")
    async def inject(request: Request) -> JSONResponse:
        who = principal(request)
        data = await read_json(request, config.request_body_limit)
        try:
            inject_request = InjectRequest.model_validate(data)
        except ValidationError as exc:
            REQUESTS.labels("invalid").inc()
            raise from_validation_error(exc) from None
        shared = shared_metadata_errors(inject_request.metadata)
        if shared:
            REQUESTS.labels("invalid").inc()
            raise invalid(shared)
        expanded = await expanded_messages(inject_request)
        outgoing = [
            Outgoing(g.recipient, g.data, g.message_id, dict(g.headers), dict(g.metadata))
            for g in expanded
            if isinstance(g, GeneratedMessage)
        ]
        failed = [(f.email, f.error) for f in expanded if not isinstance(f, GeneratedMessage)]
        result = await submitter.submit(
            outgoing,
            sender=inject_request.envelope_sender,
            bound_tenant=None if who.admin else who.tenant,
            protocol="HTTP",
        )
        failed += result.failed
        REQUESTS.labels("accepted").inc()
        RECIPIENTS.labels("accepted").inc(len(result.accepted))
        RECIPIENTS.labels("failed").inc(len(failed))
        return JSONResponse(
            {
                "success_count": len(result.accepted),
                "fail_count": len(failed),
                "failed_recipients": [rcpt for rcpt, _ in failed],
                "errors": [f"{rcpt}: {err}" for rcpt, err in failed],
                "transactions": [
                    {
                        "id": m.id,
                        "recipient": m.recipient,
                        "queue": m.queue,
                        "status_url": f"/api/transactions/{m.id}",
                    }
                    for m in result.accepted
                ],
            }
        )

    @app.get("/api/transactions/{tx_id}")
    async def transaction(tx_id: str, request: Request, wait: float = 0.0) -> Response:
        """`wait` seconds (≤30) with If-None-Match: "<version>" long-polls for a newer version."""
        who = principal(request)
        etag = request.headers.get("if-none-match", "").strip('"')
        status = view.get(tx_id)
        if etag.isdigit() and wait > 0 and status is not None and who.may_see(status.tenant):
            status = await view.wait_newer(tx_id, int(etag), min(wait, MAX_WAIT_SECONDS))
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
