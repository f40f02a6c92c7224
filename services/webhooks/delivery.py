"""One endpoint's handling of one mail.events record: filter it, POST it signed, retry it on the backoff schedule
until it is delivered or `retry_for` runs out, and record every attempt on mail.webhook-attempts.

Time and randomness come in (`clock`, `sleep`, `rng`), so tests drive the retries without waiting.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import Counter, Histogram

from mailstream.core.clock import Clock
from mailstream.core.webhook_backoff import Backoff
from mailstream.events.kafka import Consumed, KafkaUnavailable
from mailstream.events.producer import EventSink
from mailstream.events.records import LogRecord, WebhookAttempt, WebhookEndpoint, WebhookEventType, WebhookOutcome
from mailstream.events.serde import SerdeError
from mailstream.events.topics import EVENTS, WEBHOOK_ATTEMPTS
from mailstream.observability.logs import get_logger
from mailstream.webhooks.events import body, event_id, wanted
from mailstream.webhooks.http_post import Answer
from mailstream.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

log = get_logger(__name__)
DELIVERIES = Counter(
    "mailstream_webhook_deliveries_total",
    "Events finished per endpoint: delivered or given up",
    ["endpoint", "outcome"],
)
ATTEMPTS = Counter(
    "mailstream_webhook_attempts_total",
    "POSTs per endpoint by result (2xx, other status, no answer)",
    ["endpoint", "result"],
)
SECONDS = Histogram("mailstream_webhook_request_seconds", "Time of one POST, until its answer or failure", ["endpoint"])

Sleep = Callable[[float], Awaitable[None]]


class Post(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer: ...


class Deliverer:
    def __init__(
        self,
        endpoint: WebhookEndpoint,
        poster: Post,
        attempts: EventSink,
        backoff: Backoff,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
    ) -> None:
        self.endpoint = endpoint
        self._poster, self._attempts, self._backoff = poster, attempts, backoff
        self._clock, self._sleep, self._rng = clock, sleep, rng

    async def handle(self, record: Consumed) -> None:
        """Return once the record needs nothing more: not wanted, delivered, or given up."""
        try:
            event = EVENTS.decode(record.value)
        except SerdeError as exc:  # not a LogRecord: no endpoint can be told anything about it
            log.error(
                "event_unreadable",
                endpoint=self.endpoint.id,
                partition=record.partition,
                offset=record.offset,
                error=str(exc),
            )
            return
        kind = wanted(self.endpoint, event)
        if kind is not None:
            await self._deliver(event, kind, event_id(record.partition, record.offset))

    async def _deliver(self, event: LogRecord, kind: WebhookEventType, ident: str) -> None:
        data = body(event, kind, ident)
        first_failure = None
        attempt = 0
        while True:
            attempt += 1
            started = self._clock()
            stamp = int(started.timestamp())  # signed anew on every attempt: receivers refuse stale timestamps
            answer = await self._poster.post(
                self.endpoint.url,
                data,
                {
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: str(stamp),
                    SIGNATURE_HEADER: signature(self.endpoint.secret, stamp, data),
                    "X-Mailstream-Event-Id": ident,
                    "X-Mailstream-Attempt": str(attempt),
                },
            )
            SECONDS.labels(self.endpoint.id).observe(answer.seconds)
            ATTEMPTS.labels(self.endpoint.id, "2xx" if answer.ok else "status" if answer.status else "no_answer").inc()
            if answer.ok:
                await self._record(event, kind, ident, attempt, answer, started, "DELIVERED")
                DELIVERIES.labels(self.endpoint.id, "delivered").inc()
                return
            first_failure = first_failure or started
            due = self._backoff.next_attempt(attempt, first_failure, self._clock(), self._rng)
            await self._record(event, kind, ident, attempt, answer, started, "RETRYING" if due else "GIVEN_UP")
            if due is None:
                DELIVERIES.labels(self.endpoint.id, "given_up").inc()
                log.warning(
                    "webhook_given_up", endpoint=self.endpoint.id, event_id=ident, attempts=attempt, error=answer.error
                )
                return
            await self._sleep(max(0.0, (due - self._clock()).total_seconds()))

    async def _record(
        self,
        event: LogRecord,
        kind: WebhookEventType,
        ident: str,
        attempt: int,
        answer: Answer,
        started: datetime,
        outcome: WebhookOutcome,
    ) -> None:
        record = WebhookAttempt(
            endpoint_id=self.endpoint.id,
            tenant=self.endpoint.tenant,
            event_id=ident,
            event_type=kind,
            transaction_id=event.id,
            attempt=attempt,
            status_code=answer.status,
            error=answer.error,
            duration_ms=int(answer.seconds * 1000),
            attempted_at=started,
            outcome=outcome,
        )
        try:
            await self._attempts.send(WEBHOOK_ATTEMPTS, self.endpoint.id, record)
        except KafkaUnavailable as exc:  # the attempt log is for people: delivery goes on without it
            log.error("attempt_not_recorded", endpoint=self.endpoint.id, event_id=ident, error=str(exc))


def backoff_of(endpoint: WebhookEndpoint, interval: timedelta, max_interval: timedelta) -> Backoff:
    return Backoff(interval, max_interval, timedelta(milliseconds=endpoint.retry_for_ms))
