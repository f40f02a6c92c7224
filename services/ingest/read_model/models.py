"""Response models of the message search and queue metrics, named as the email-queue model names them."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from mailstream.core.bounce_classify import BounceType
from mailstream.events.records import AttemptOutcome, MessageStatus, QueueState, TransactionStatus
from mailstream.events.serde import decode


class SmtpResponse(BaseModel):
    code: int
    message: str
    enhanced_code: str | None = None
    timestamp: datetime


class MessageQueueItem(BaseModel):
    id: str = Field(description="Transaction id (one recipient).")
    message_id: str
    queue_name: str
    recipient: str
    sender: str
    domain: str
    routing_domain: str | None = None
    campaign_id: str | None = None
    tenant_id: str | None = None
    pool_name: str | None = None
    egress_source: str | None = Field(None, description="Source of the last attempt.")
    status: MessageStatus
    queue_state: QueueState
    priority: int = Field(description="0-10, higher first; the queue's when the sender named none.")
    size_bytes: int
    num_attempts: int
    max_attempts: int | None = Field(
        None, description="Attempts the queue's retry schedule fits before expiry (there is no count limit)."
    )
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_bounce_reason: str | None = None
    bounce_classification: BounceType | None = None
    kumomta_classification: str | None = Field(None, description="KumoMTA's bounce class, e.g. InvalidRecipient.")
    created_at: datetime
    scheduled_at: datetime
    delivered_at: datetime | None = None
    expires_at: datetime | None = None
    smtp_response: SmtpResponse | None = None
    delivery_protocol: Literal["smtp"] = "smtp"
    headers: dict[str, str] = {}
    body_hash: str | None = None
    attachment_count: int | None = None
    tags: list[str] = []
    metadata: dict[str, str] = {}


class Attempt(BaseModel):
    attempt: int
    outcome: AttemptOutcome
    smtp_response: SmtpResponse
    egress_source: str
    egress_path: str
    peer_address: str | None = None
    started_at: datetime
    completed_at: datetime


class MessageDetail(MessageQueueItem):
    final_reason: str | None = None
    attempts: list[Attempt] = []


class MessagePage(BaseModel):
    messages: list[MessageQueueItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    limit: int
    sort_by: str
    sort_order: Literal["asc", "desc"]


class DomainHealthScore(BaseModel):
    domain: str
    score: float = Field(ge=0, le=100)
    bounce_rate: float
    deferral_rate: float
    average_delivery_time: float
    last_successful_delivery: datetime | None = None
    throttle_rate: float | None = None


class QueueMetrics(BaseModel):
    total_messages: int
    messages_by_status: dict[str, int]
    average_queue_time: float
    average_delivery_time: float
    delivery_rate: float
    queue_depth: int
    queue_depth_by_domain: dict[str, int]
    queue_depth_by_campaign: dict[str, int]
    total_retries: int
    retry_rate: float
    bounce_rate: float
    bounces_by_type: dict[str, int]
    domain_health_scores: dict[str, DomainHealthScore]
    messages_last_hour: int
    messages_last_24h: int
    messages_last_7d: int
    total_size_bytes: int
    oldest_message_age: float
    newest_message_age: float


class TimelinePoint(BaseModel):
    at: datetime = Field(description="The bucket's start.")
    delivered: int
    bounced: int
    delivery_rate: float = Field(description="The bucket's deliveries per hour.")


class DeliveryTimeline(BaseModel):
    since: datetime
    until: datetime
    bucket_seconds: float
    points: list[TimelinePoint]


def _at(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def item(row: sqlite3.Row) -> dict[str, Any]:
    smtp = None
    if row["smtp_code"] is not None:
        smtp = SmtpResponse(
            code=row["smtp_code"],
            message=row["smtp_message"] or "",
            enhanced_code=row["smtp_enhanced"],
            timestamp=_at(row["smtp_at"]) or _at(row["updated_at"]),
        )
    return {
        **{k: row[k] for k in ("id", "message_id", "queue_name", "recipient", "sender", "domain", "routing_domain")},
        **{k: row[k] for k in ("campaign_id", "tenant_id", "pool_name", "egress_source", "status", "queue_state")},
        **{k: row[k] for k in ("priority", "size_bytes", "num_attempts", "max_attempts", "last_bounce_reason")},
        "bounce_classification": row["bounce_type"],
        "kumomta_classification": row["bounce_class"],
        **{k: _at(row[k]) for k in ("last_attempt_at", "next_attempt_at", "created_at", "scheduled_at")},
        **{k: _at(row[k]) for k in ("delivered_at", "expires_at")},
        "smtp_response": smtp,
        "headers": json.loads(row["headers"] or "{}"),
        "body_hash": row["body_hash"],
        "attachment_count": row["attachment_count"],
        "tags": json.loads(row["tags"] or "[]"),
        "metadata": json.loads(row["metadata"] or "{}"),
    }


def detail(row: sqlite3.Row) -> MessageDetail:
    st = decode(row["record"], TransactionStatus) if row["record"] else None
    attempts = [
        Attempt(
            attempt=a.attempt,
            outcome=a.outcome,
            smtp_response=SmtpResponse(
                code=a.response.code,
                message=a.response.content,
                enhanced_code=a.response.enhanced_code,
                timestamp=a.completed_at,
            ),
            egress_source=a.egress_source,
            egress_path=a.egress_path,
            peer_address=a.peer_address,
            started_at=a.started_at,
            completed_at=a.completed_at,
        )
        for a in (st.attempts if st else ())
    ]
    return MessageDetail(**item(row), final_reason=st.final_reason if st else None, attempts=attempts)
