"""What each record says about a message's row. Pure: records and the queue configuration in, columns out.

mail.accepted carries the submission facts (routing, size, headers, body hash, metadata, tags, the sender's
priority and expiry); mail.status the progress (status, queue state, attempts and their responses, pool,
bounce class). Where the sender named no priority or expiry, the queue's configured one applies, resolved
here as stage 1 resolves it (the most specific matching rule wins; file order breaks ties).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mailstream.config.scheduling import QueueDefaults
from mailstream.core.backoff import RetryPolicy
from mailstream.events.records import AcceptedMessage, TransactionStatus
from mailstream.ingest.read_model.query import ms

MAX_TAGS = 32
MAX_ATTEMPTS_COUNTED = 1000
_MATCH = ("tenant", "campaign", "domain", "routing_domain")


@dataclass(frozen=True, slots=True)
class QueueDefaultsOf:
    priority: int
    max_age: timedelta
    max_attempts: int  # attempts the retry schedule fits into max_age (no attempt limit otherwise)


class _NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def attempts_within(policy: RetryPolicy, lifetime: timedelta) -> int:
    """How many attempts the backoff schedule (without jitter) starts before `lifetime` is over."""
    rng, at, attempts = _NoJitter(0), timedelta(0), 1
    while attempts < MAX_ATTEMPTS_COUNTED:
        at += policy.delay(attempts - 1, rng)
        if at >= lifetime:
            break
        attempts += 1
    return attempts


class QueueResolver:
    """A queue's priority, max_age and attempt count from the configuration, cached per match key."""

    def __init__(self, queues: QueueDefaults) -> None:
        self._queues = queues
        self._cache: dict[tuple[str | None, ...], QueueDefaultsOf] = {}

    def __call__(self, tenant: str | None, campaign: str | None, domain: str, routing: str | None) -> QueueDefaultsOf:
        key = (tenant, campaign, domain, routing)
        found = self._cache.get(key)
        if found is None:
            q = self._queues
            merged: dict[str, Any] = {
                "priority": q.priority,
                "max_age": q.max_age,
                "retry_interval": q.retry_interval,
                "max_retry_interval": q.max_retry_interval,
            }
            rules = [r for r in q.rules if all(getattr(r, f) in (None, v) for f, v in zip(_MATCH, key, strict=True))]
            for rule in sorted(rules, key=lambda r: sum(getattr(r, f) is not None for f in _MATCH)):
                merged.update({f: v for f in merged if (v := getattr(rule, f)) is not None})
            policy = RetryPolicy(merged["retry_interval"], merged["max_retry_interval"], merged["max_age"])
            found = QueueDefaultsOf(merged["priority"], merged["max_age"], attempts_within(policy, merged["max_age"]))
            if len(self._cache) < 100_000:
                self._cache[key] = found
        return found


def tags_of(metadata: dict[str, str]) -> list[str]:
    """Tags from metadata `tags`: a JSON list of strings, or a comma-separated string."""
    raw = metadata.get("tags")
    if not raw:
        return []
    values: list[Any]
    try:
        parsed = json.loads(raw)
        values = parsed if isinstance(parsed, list) else [raw]
    except ValueError:
        values = raw.split(",")
    tags = {str(v).strip() for v in values if isinstance(v, str | int | float) and str(v).strip()}
    return sorted(t[:255] for t in tags)[:MAX_TAGS]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def routing_of(queue: str) -> str | None:
    _, bang, routing = queue.rpartition("!")
    return routing or None if bang else None


def accepted_row(msg: AcceptedMessage, resolve: QueueResolver) -> dict[str, Any]:
    defaults = resolve(msg.tenant, msg.campaign, msg.domain, msg.routing_domain)
    expires = msg.expires_at or msg.received_at + defaults.max_age
    tags = tags_of(msg.metadata)
    return {
        "id": msg.id,
        "message_id": msg.message_id,
        "queue_name": msg.queue,
        "recipient": msg.recipient,
        "sender": msg.sender,
        "domain": msg.domain.lower(),
        "routing_domain": msg.routing_domain,
        "campaign_id": msg.campaign,
        "tenant_id": msg.tenant,
        "priority": defaults.priority if msg.priority is None else msg.priority,
        "size_bytes": msg.body.size,
        "max_attempts": defaults.max_attempts,
        "created_at": ms(msg.received_at),
        "scheduled_at": ms(msg.send_at or msg.received_at),
        "expires_at": ms(expires),
        "subject": msg.headers.get("Subject", ""),
        "headers": json.dumps(msg.headers, ensure_ascii=False),
        "body_hash": msg.body.sha256,
        "attachment_count": msg.attachment_count,
        "metadata": json.dumps(msg.metadata, ensure_ascii=False),
        "tags": json.dumps(tags),
        "tag_list": tags,
        "reception_protocol": msg.reception_protocol,
    }


def status_row(st: TransactionStatus, resolve: QueueResolver) -> dict[str, Any]:
    """The progress columns, and the submission facts a status also carries (used only while the row has not
    seen its accepted record: mail.accepted is kept 10 days, mail.status for ever)."""
    last = st.attempts[-1] if st.attempts else None
    delivered = next((a.completed_at for a in reversed(st.attempts) if a.outcome == "DELIVERED"), None)
    if st.status == "delivered" and delivered is None:
        delivered = st.updated_at
    failed = st.status in ("bounced", "expired", "cancelled") or (last is not None and last.outcome != "DELIVERED")
    reason = st.final_reason if st.is_final and st.status != "delivered" else None
    if reason is None and failed and last is not None:
        reason = last.response.content
    domain = domain_of(st.recipient)
    routing = routing_of(st.queue)
    defaults = resolve(st.tenant, st.campaign, domain, routing)
    return {
        "id": st.id,
        "status_version": st.version,
        "status": st.status,
        "queue_state": st.queue_state,
        "num_attempts": st.num_attempts,
        "next_attempt_at": ms(st.next_attempt_at),
        "last_attempt_at": ms(last.started_at) if last else None,
        "delivered_at": ms(delivered) if st.status == "delivered" else None,
        "pool_name": st.egress_pool,
        "egress_source": last.egress_source if last else None,
        "smtp_code": last.response.code if last else None,
        "smtp_enhanced": last.response.enhanced_code if last else None,
        "smtp_message": last.response.content if last else None,
        "smtp_at": ms(last.completed_at) if last else None,
        "last_bounce_reason": reason if failed else None,
        "bounce_type": st.bounce_type,
        "bounce_class": st.bounce_classification,
        "final": int(st.is_final),
        "updated_at": ms(st.updated_at),
        # submission facts, for a row without its accepted record
        "message_id": st.message_id,
        "queue_name": st.queue,
        "recipient": st.recipient,
        "sender": st.sender,
        "domain": domain,
        "routing_domain": routing,
        "campaign_id": st.campaign,
        "tenant_id": st.tenant,
        "priority": defaults.priority,
        "max_attempts": defaults.max_attempts,
        "created_at": ms(st.created_at),
        "scheduled_at": ms(st.created_at),
        "expires_at": ms(st.created_at + defaults.max_age),
    }
