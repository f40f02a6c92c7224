"""The Deliverer on a scripted endpoint and a manual clock: what is POSTed, how it is retried, when it is given up
and what each attempt records. The HTTP side is faked here; tests/integration/test_webhooks.py has real servers."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from mailstream.core.clock import ManualClock
from mailstream.core.webhook_backoff import Backoff
from mailstream.events import fixtures
from mailstream.events.kafka import Consumed
from mailstream.events.memory import MemoryProducer
from mailstream.events.records import LogRecordType, WebhookAttempt
from mailstream.events.serde import decode
from mailstream.events.topics import EVENTS, WEBHOOK_ATTEMPTS
from mailstream.webhooks.delivery import Deliverer
from mailstream.webhooks.http_post import Answer
from mailstream.webhooks.signature import verify

ENDPOINT = fixtures.webhook_endpoint()  # acme: delivered, bounced; retry_for 24 h
BACKOFF = Backoff(timedelta(seconds=10), timedelta(minutes=10), timedelta(hours=1))


class Endpoint:
    """Answers from a script (then 200), keeping what it was sent."""

    def __init__(self, clock: ManualClock, *answers: Answer) -> None:
        self.clock, self.answers = clock, list(answers)
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []
        self.times: list[datetime] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.requests.append((url, body, headers))
        self.times.append(self.clock())
        return self.answers.pop(0) if self.answers else Answer(200, None, 0.01)


def consumed(kind: LogRecordType = "Delivery", tenant: str = "acme", offset: int = 7) -> Consumed:
    value = EVENTS.encode(fixtures.log_record().model_copy(update={"type": kind, "tenant": tenant}))
    return Consumed(EVENTS.name, 3, offset, b"tx-1", value)


def deliverer(
    endpoint: Endpoint, clock: ManualClock, producer: MemoryProducer, backoff: Backoff = BACKOFF
) -> tuple[Deliverer, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    return Deliverer(ENDPOINT, endpoint, producer, backoff, clock, sleep, random.Random(5)), waits


def attempts(producer: MemoryProducer) -> list[WebhookAttempt]:
    return [decode(r.value, WebhookAttempt) for r in producer.records(WEBHOOK_ATTEMPTS)]


async def test_a_wanted_event_is_posted_once_signed_and_recorded() -> None:
    clock, producer = ManualClock(fixtures.T0), MemoryProducer()
    endpoint = Endpoint(clock)
    handler, waits = deliverer(endpoint, clock, producer)
    await handler.handle(consumed())
    [(url, body, headers)] = endpoint.requests
    assert url == ENDPOINT.url
    assert json.loads(body)["id"] == "3-7"
    assert headers["Content-Type"] == "application/json"
    assert verify(
        ENDPOINT.secret,
        headers["X-Mailstream-Signature"],
        headers["X-Mailstream-Timestamp"],
        body,
        now=fixtures.T0.timestamp(),
    )
    [attempt] = attempts(producer)
    assert (
        attempt.endpoint_id,
        attempt.event_id,
        attempt.event_type,
        attempt.transaction_id,
        attempt.attempt,
        attempt.status_code,
        attempt.error,
        attempt.outcome,
    ) == ("wh-1", "3-7", "delivered", "tx-1", 1, 200, None, "DELIVERED")
    assert producer.records(WEBHOOK_ATTEMPTS)[0].key == b"wh-1"
    assert waits == []


async def test_records_the_endpoint_does_not_want_are_not_posted() -> None:
    clock, producer = ManualClock(fixtures.T0), MemoryProducer()
    endpoint = Endpoint(clock)
    handler, _ = deliverer(endpoint, clock, producer)
    await handler.handle(consumed("TransientFailure"))
    await handler.handle(consumed("Delivery", tenant="globex"))
    await handler.handle(Consumed(EVENTS.name, 3, 9, b"x", b"not avro"))  # unreadable: logged and passed over
    assert endpoint.requests == []
    assert attempts(producer) == []


async def test_failures_are_retried_on_the_backoff_schedule_until_one_succeeds() -> None:
    clock, producer = ManualClock(fixtures.T0), MemoryProducer()
    endpoint = Endpoint(
        clock, Answer(500, "HTTP 500", 0.02), Answer(None, "ConnectError", 0.0), Answer(503, "HTTP 503", 0.02)
    )
    handler, waits = deliverer(endpoint, clock, producer)
    await handler.handle(consumed())
    assert len(endpoint.requests) == 4
    assert [5 <= waits[0] <= 10, 10 <= waits[1] <= 20, 20 <= waits[2] <= 40] == [True] * 3
    assert len({r[1] for r in endpoint.requests}) == 1  # the same body every time
    stamps = [int(r[2]["X-Mailstream-Timestamp"]) for r in endpoint.requests]
    assert stamps == sorted(set(stamps))  # each attempt signed at its own time
    assert [r[2]["X-Mailstream-Attempt"] for r in endpoint.requests] == ["1", "2", "3", "4"]
    assert [(a.attempt, a.status_code, a.error, a.outcome) for a in attempts(producer)] == [
        (1, 500, "HTTP 500", "RETRYING"),
        (2, None, "ConnectError", "RETRYING"),
        (3, 503, "HTTP 503", "RETRYING"),
        (4, 200, None, "DELIVERED"),
    ]


async def test_an_event_failing_past_retry_for_is_given_up() -> None:
    clock, producer = ManualClock(fixtures.T0), MemoryProducer()
    endpoint = Endpoint(clock, *[Answer(500, "HTTP 500", 0.0)] * 1000)
    handler, _ = deliverer(endpoint, clock, producer)
    await handler.handle(consumed())
    recorded = attempts(producer)
    assert recorded[-1].outcome == "GIVEN_UP"
    assert {a.outcome for a in recorded[:-1]} == {"RETRYING"}
    assert endpoint.times[-1] - fixtures.T0 <= timedelta(hours=1)
    assert endpoint.times[-1] + timedelta(minutes=10) > fixtures.T0 + timedelta(hours=1)


async def test_an_attempt_the_event_log_refuses_does_not_stop_delivery() -> None:
    clock, producer = ManualClock(fixtures.T0), MemoryProducer()
    producer.unavailable = "broker down"
    endpoint = Endpoint(clock)
    handler, _ = deliverer(endpoint, clock, producer)
    await handler.handle(consumed())
    assert len(endpoint.requests) == 1
