"""Which mail.events records an endpoint hears of, and the JSON it is sent: pure functions of the record.

The event types are the records' meanings as a producer names them; suppressed has no record yet, so nothing
maps to it (an endpoint may subscribe to it already). A bounce reported by mail after delivery is a Bounce
record too (meta oob=true), so `bounced`; a complaint (a Feedback record) is `feedback`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mailstream.config.webhooks import EndpointConfig
from mailstream.events.records import LogRecord, LogRecordType, WebhookEndpoint, WebhookEventType

EVENT_OF_RECORD: dict[LogRecordType, WebhookEventType] = {
    "Delivery": "delivered",
    "TransientFailure": "deferred",
    "Bounce": "bounced",
    "Expiration": "expired",
    "AdminBounce": "cancelled",  # an admin bounce of a scope, or one transaction cancelled through the API
    "Rejection": "rejected",  # refused by a draining or disabled queue
    "Feedback": "feedback",  # a complaint received by mail (RFC 5965)
}


def event_type(record: LogRecord) -> WebhookEventType | None:
    """The record's event type; None for a Reception (not an outcome)."""
    return EVENT_OF_RECORD.get(record.type)


def wanted(endpoint: WebhookEndpoint, record: LogRecord) -> WebhookEventType | None:
    """The event type to send `endpoint` for `record`, or None when it is not the endpoint's tenant's or type."""
    kind = event_type(record)
    if kind is None or kind not in endpoint.events:
        return None
    if endpoint.tenant is not None and record.tenant != endpoint.tenant:
        return None
    return kind


def event_id(partition: int, offset: int) -> str:
    """The event's identity, the same on every retry and redelivery: receivers deduplicate by it."""
    return f"{partition}-{offset}"


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def payload(record: LogRecord, kind: WebhookEventType, event: str) -> dict[str, Any]:
    """The JSON object POSTed for one event."""
    return {
        "id": event,
        "type": kind,
        "record_type": record.type,
        "transaction_id": record.id,
        "tenant": record.tenant,
        "campaign": record.campaign,
        "message_id": record.message_id,
        "sender": record.sender,
        "recipient": record.recipient,
        "queue": record.queue,
        "response": {
            "code": record.response.code,
            "enhanced_code": record.response.enhanced_code,
            "text": record.response.content,
        },
        "num_attempts": record.num_attempts,
        "bounce_classification": record.bounce_classification,
        "bounce_type": record.bounce_type,
        "site": record.site or None,
        "peer_address": record.peer_address,
        "timestamp": _time(record.timestamp),
        "created": _time(record.created),
    }


def body(record: LogRecord, kind: WebhookEventType, event: str) -> bytes:
    """`payload` as the bytes sent and signed (compact, keys in a fixed order)."""
    return json.dumps(payload(record, kind, event), separators=(",", ":"), ensure_ascii=False).encode()


def from_config(endpoint: EndpointConfig, seen_at: datetime) -> WebhookEndpoint:
    """An endpoint of the file as the record an API endpoint is; `seen_at` stands for its creation (where its
    consumer group starts when it has committed nothing yet)."""
    return WebhookEndpoint(
        id=endpoint.id,
        name=endpoint.name,
        tenant=endpoint.tenant,
        url=endpoint.url,
        secret=endpoint.secret.get_secret_value(),
        events=tuple(endpoint.events),
        retry_for_ms=int(endpoint.retry_for.total_seconds() * 1000),
        timeout_ms=int(endpoint.timeout.total_seconds() * 1000),
        created_at=seen_at,
        created_by="config",
    )


def same_delivery(a: WebhookEndpoint, b: WebhookEndpoint) -> bool:
    """Whether two versions of an endpoint deliver alike (a config endpoint's `created_at` moves on restarts)."""
    return a.model_copy(update={"created_at": b.created_at}) == b
