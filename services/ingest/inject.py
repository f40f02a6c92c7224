"""POST /api/inject/v1: validate, expand within bounds, write all or nothing within the deadline, answer once.

The steps, each refusing what it cannot do before anything is accepted: the body is parsed and validated
(problems, json_body, inject_request); templates render within their bounds (templates, render_pool) and the
messages are built; the Submitter writes the bodies (outside any transaction: a body nobody references is
harmless) and then the request's accepted/status/Reception records, with the idempotency answer when the request
has a key, through a transactional writer: committed together or not at all. The request is answered within
`ingest.request_deadline` of its body being read.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from typing import Any

from fastapi import Request, Response
from prometheus_client import Counter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mailstream.config.model import IngestConfig
from mailstream.core.clock import Clock
from mailstream.core.disposition_class import classify_disposition
from mailstream.events.group_commit import OutcomeUnknown
from mailstream.events.kafka import KafkaUnavailable
from mailstream.events.records import IdempotentAnswer
from mailstream.events.topics import ANSWERS, MESSAGE_LIFETIME
from mailstream.ingest.auth import Principal
from mailstream.ingest.idempotency import Answers, idempotency_key
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
from mailstream.ingest.problems import Problem, from_validation_error, invalid, parse_body, read_body
from mailstream.ingest.render_pool import RenderJob, RenderPool, TemplateRefused
from mailstream.ingest.templates import ExpansionTooLarge
from mailstream.ingest.tenant_rights import check_from, check_request
from mailstream.intake.submission import Outgoing, SubmitResult, Submitter, new_transaction_id

REQUESTS = Counter("mailstream_ingest_requests_total", "Injection requests by outcome", ["outcome"])
RECIPIENTS = Counter("mailstream_ingest_recipients_total", "Recipients by result", ["result"])
INLINE_RECIPIENTS = 4
RETRY_AFTER = {"Retry-After": "5"}


def unavailable(detail: str) -> Problem:
    REQUESTS.labels("unavailable").inc()
    return Problem(503, "Service unavailable", detail, headers=RETRY_AFTER)


class Injector:
    def __init__(
        self, config: IngestConfig, submitter: Submitter, clock: Clock, pool: RenderPool, answers: Answers
    ) -> None:
        self._config, self._submitter, self._clock, self._pool, self.answers = config, submitter, clock, pool, answers
        self._limits = Limits(config.max_message_size, config.expansion_limit)

    async def handle(self, request: Request, who: Principal) -> Response:
        raw = await read_body(request, self._config.request_body_limit)
        key = idempotency_key(request.headers.get("idempotency-key"))
        scoped = f"{who.key_id}/{key}" if key is not None else None
        fingerprint = hashlib.sha256(raw).hexdigest()
        if scoped is not None:
            stored = self.answers.claim(scoped, fingerprint)
            if stored is not None:
                REQUESTS.labels("replayed").inc()
                return Response(
                    stored.body, stored.status, media_type="application/json", headers={"Idempotent-Replayed": "true"}
                )
        committed = False
        loop = asyncio.get_running_loop()
        seconds = self._config.request_deadline.total_seconds()
        deadline = loop.time() + seconds
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    body, result, prepared = await self._accept(raw, who)
            except TimeoutError:
                raise unavailable(
                    f"the event log did not take the request within {seconds:g} s; nothing was accepted"
                ) from None
            answer = (
                None
                if scoped is None
                else IdempotentAnswer(
                    key=scoped, fingerprint=fingerprint, status=200, answer=body, created_at=self._clock()
                )
            )
            extra = [] if answer is None else [(ANSWERS.name, answer.key.encode(), ANSWERS.encode(answer))]
            try:
                await self._submitter.commit(prepared, extra, timeout=max(0.0, deadline - loop.time()))
            except OutcomeUnknown as exc:
                if answer is not None:
                    self.answers.settle_later(answer, exc.outcome)
                    committed = True  # the key stays reserved until the outcome is known
                raise unavailable(
                    "the event log did not confirm the write in time: it may or may not have "
                    "been accepted; retry with the same Idempotency-Key to learn which"
                ) from None
            committed = True
            if answer is not None:
                self.answers.record(answer)
        except KafkaUnavailable as exc:
            raise unavailable(f"the event log is not accepting writes: {exc}; nothing was accepted") from None
        finally:
            if scoped is not None and not committed:
                self.answers.release(scoped)
        REQUESTS.labels("accepted").inc()
        RECIPIENTS.labels("accepted").inc(len(result.accepted))
        RECIPIENTS.labels("failed").inc(len(result.failed))
        return Response(body, 200, media_type="application/json")

    async def _accept(self, raw: bytes, who: Principal) -> tuple[str, SubmitResult, Any]:
        """(the answer's JSON, what was accepted, the records to commit): bodies written, nothing else."""
        try:
            request = InjectRequest.model_validate(parse_body(raw))
        except ValidationError as exc:
            REQUESTS.labels("invalid").inc()
            raise from_validation_error(exc) from None
        except Problem:
            REQUESTS.labels("invalid").inc()
            raise
        shared = shared_metadata_errors(request.metadata, latest=self._clock() + MESSAGE_LIFETIME)
        if shared:
            REQUESTS.labels("invalid").inc()
            raise invalid(shared)
        policies = self._submitter.policies
        check_request(request, who, policies)  # 403: a sender domain or steering metadata the tenant may not use
        expanded = await self._expanded(request)
        check_from(request, expanded, who, policies)
        trace = request.trace_headers.name() if request.trace_headers is not None else None
        outgoing = [
            Outgoing(g.recipient, g.data, g.message_id, dict(g.headers), dict(g.metadata), trace)
            for g in expanded
            if isinstance(g, GeneratedMessage)
        ]
        prepared = await self._submitter.prepare(
            outgoing, sender=request.envelope_sender, bound_tenant=None if who.admin else who.tenant, protocol="HTTP"
        )
        result = prepared.result
        result.failed[:0] = [(f.email, f.error) for f in expanded if not isinstance(f, GeneratedMessage)]
        return json.dumps(answer_json(result), ensure_ascii=False, separators=(",", ":")), result, prepared

    async def _expanded(self, request: InjectRequest) -> list[GeneratedMessage | RecipientFailure]:
        """Templates that are more than substitutions render in a worker process (render_pool), within the time
        and output bounds; the messages are built here, off the loop for more than a few recipients."""
        limits, rendered = self._limits, None
        try:
            if needs_worker(request):
                budget = self._config.template_time_limit.total_seconds()
                rendered = await self._pool.render(
                    RenderJob(
                        template_sources(request),
                        recipient_variables(request),
                        budget,
                        limits.message_bytes,
                        limits.total_bytes,
                    )
                )
            build = functools.partial(
                expand,
                request,
                message_id_domain=self._config.message_id_domain,
                now=self._clock(),
                make_id=new_transaction_id,
                rendered=rendered,
                limits=limits,
            )
            # Building thousands of messages must not stall the loop; a few are cheaper than the thread hop.
            return build() if len(request.recipients) <= INLINE_RECIPIENTS else await run_in_threadpool(build)
        except TemplateRefused as exc:
            REQUESTS.labels("invalid").inc()
            raise invalid([(exc.field, exc.reason)]) from None
        except ExpansionTooLarge as exc:
            REQUESTS.labels("invalid").inc()
            raise Problem(413, "Payload too large", str(exc)) from None


def answer_json(result: SubmitResult) -> dict[str, Any]:
    """KumoMTA's answer, plus one transaction per accepted recipient and each refusal classified."""
    refused = classify_disposition("refusal")
    return {
        "success_count": len(result.accepted),
        "fail_count": len(result.failed),
        "failed_recipients": [rcpt for rcpt, _ in result.failed],
        "errors": [f"{rcpt}: {err}" for rcpt, err in result.failed],
        "refusals": [
            {
                "recipient": rcpt,
                "error": err,
                "bounce_classification": refused.bounce_class,
                "bounce_type": refused.bounce_type,
            }
            for rcpt, err in result.failed
        ],
        "transactions": [
            {"id": m.id, "recipient": m.recipient, "queue": m.queue, "status_url": f"/api/transactions/{m.id}"}
            for m in result.accepted
        ],
    }
