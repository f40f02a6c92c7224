"""Which records an endpoint hears of, and what it is sent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import get_args

import pytest

from mailstream.config.webhooks import EVENT_TYPES, EndpointConfig
from mailstream.events import fixtures
from mailstream.events.records import LogRecordType, WebhookEventType
from mailstream.webhooks.events import EVENT_OF_RECORD, body, event_type, from_config, same_delivery, wanted

ENDPOINT = fixtures.webhook_endpoint()  # acme, delivered + bounced


def record(kind: LogRecordType, tenant: str | None = "acme"):
    return fixtures.log_record().model_copy(update={"type": kind, "tenant": tenant})


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Delivery", "delivered"),
        ("TransientFailure", "deferred"),
        ("Bounce", "bounced"),
        ("Expiration", "expired"),
        ("AdminBounce", "cancelled"),
        ("Rejection", "rejected"),
        ("Feedback", "feedback"),
        ("Reception", None),
    ],
)
def test_each_record_type_maps_to_its_event(kind: LogRecordType, expected: str | None) -> None:
    assert event_type(record(kind)) == expected


def test_every_record_type_but_reception_is_an_event_and_the_config_accepts_every_event() -> None:
    assert set(EVENT_OF_RECORD) == set(get_args(LogRecordType)) - {"Reception"}
    assert set(EVENT_TYPES) == set(get_args(WebhookEventType))
    assert set(EVENT_TYPES) - set(EVENT_OF_RECORD.values()) == {"suppressed"}  # nothing writes it yet


def test_an_endpoint_hears_of_its_types_of_its_tenant_only() -> None:
    assert wanted(ENDPOINT, record("Delivery")) == "delivered"
    assert wanted(ENDPOINT, record("Bounce")) == "bounced"
    assert wanted(ENDPOINT, record("TransientFailure")) is None  # not subscribed
    assert wanted(ENDPOINT, record("Delivery", tenant="globex")) is None
    assert wanted(ENDPOINT, record("Delivery", tenant=None)) is None


def test_an_endpoint_without_tenant_hears_of_every_tenant() -> None:
    everyone = ENDPOINT.model_copy(update={"tenant": None})
    assert wanted(everyone, record("Delivery", tenant="globex")) == "delivered"
    assert wanted(everyone, record("Delivery", tenant=None)) == "delivered"


def test_the_body_carries_the_event() -> None:
    sent = json.loads(body(record("Bounce"), "bounced", "3-17"))
    assert sent == {
        "id": "3-17",
        "type": "bounced",
        "record_type": "Bounce",
        "transaction_id": "tx-1",
        "tenant": "acme",
        "campaign": None,
        "message_id": None,
        "sender": "bounce@acme.test",
        "recipient": "ann@example.com",
        "queue": "spring:acme@example.com",
        "response": {"code": 250, "enhanced_code": "2.0.0", "text": "OK queued as 1234"},
        "num_attempts": 1,
        "bounce_classification": None,
        "bounce_type": None,
        "site": "unspecified->mx.example.com",
        "peer_address": None,
        "timestamp": "2026-11-22T08:00:00.123000Z",
        "created": "2026-11-22T08:00:00.123000Z",
    }


def test_a_configured_endpoint_becomes_a_record_and_a_restart_is_no_change() -> None:
    configured = EndpointConfig.model_validate(
        {"name": "ops", "url": "https://hooks.test/x", "secret": "s" * 16, "events": ["expired"], "retry_for": "2h"}
    )
    first = from_config(configured, fixtures.T0)
    assert (first.id, first.secret, first.events, first.retry_for_ms, first.timeout_ms) == (
        "config-ops",
        "s" * 16,
        ("expired",),
        7_200_000,
        10_000,
    )
    assert same_delivery(first, from_config(configured, fixtures.T0 + timedelta(hours=1)))
    assert not same_delivery(first, first.model_copy(update={"url": "https://hooks.test/y"}))
