"""A message's life in its scheduled queue, as pure decisions: (state, event, now) -> (state, effects).

The Faust agents only apply these effects (table writes, topic sends); nothing here does I/O.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailstream.core.backoff import RetryPolicy, next_attempt
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.egress_choice import NoEligibleSource, choose_source
from mailstream.core.queue_name import NULL_QUEUE
from mailstream.events.records import (
    AcceptedMessage,
    AttemptRecord,
    DeliveryResponse,
    DeliveryTask,
    LogRecord,
    LogRecordType,
    QueuedMessage,
    SmtpResponse,
    TransactionStatus,
)


@dataclass(frozen=True, slots=True)
class SchedulerPolicy:
    retry: RetryPolicy
    egress_pool: str
    pools: Mapping[str, Sequence[tuple[str, int]]]
    site: str | None  # a fixed smarthost site, or None to route by (routing) domain
    classifier: BounceClassifier


@dataclass(slots=True)
class Effects:
    state: QueuedMessage | None = None  # new table value; None with delete=True removes it
    delete: bool = False
    tasks: list[DeliveryTask] = field(default_factory=list)
    statuses: list[TransactionStatus] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)


def _log(kind: LogRecordType, tx: TransactionStatus, q: QueuedMessage, response: SmtpResponse, now: datetime,
         *, attempt: DeliveryResponse | None = None, bounce_class: str | None = None) -> LogRecord:
    return LogRecord(
        type=kind, id=tx.id, sender=tx.sender, recipient=tx.recipient, queue=tx.queue,
        site=attempt.egress_path if attempt else "", size=q.body.size, response=response,
        peer_address=attempt.peer_address if attempt else None, timestamp=now, created=tx.created_at,
        num_attempts=tx.num_attempts, bounce_classification=bounce_class, egress_pool=tx.egress_pool,
        egress_source=attempt.egress_source if attempt else None,
        delivery_protocol="ESMTP" if attempt else None, tenant=tx.tenant, campaign=tx.campaign,
        message_id=tx.message_id)


def _task(q: QueuedMessage, policy: SchedulerPolicy, now: datetime) -> DeliveryTask:
    tx = q.transaction
    attempt = tx.num_attempts + 1
    attempt_id = f"{tx.id}/{attempt}"
    pool = tx.egress_pool or policy.egress_pool
    source = choose_source(policy.pools[pool], attempt_id)
    site = policy.site or q.routing_domain or q.domain
    return DeliveryTask(
        id=tx.id, attempt=attempt, attempt_id=attempt_id, queue=tx.queue, egress_pool=pool,
        egress_source=source, egress_path=f"{source}->{site}", sender=tx.sender, recipient=tx.recipient,
        domain=q.domain, routing_domain=q.routing_domain, tenant=tx.tenant, campaign=tx.campaign, body=q.body,
        created_at=tx.created_at, issued_at=now)


def _advance(q: QueuedMessage, now: datetime, **changes: object) -> QueuedMessage:
    tx = q.transaction.model_copy(update={"version": q.transaction.version + 1, "updated_at": now, **changes})
    return q.model_copy(update={"transaction": tx})


def _dispatch(q: QueuedMessage, policy: SchedulerPolicy, now: datetime, effects: Effects) -> Effects:
    try:
        task = _task(q, policy, now)
    except NoEligibleSource as exc:
        # Counts as a failed attempt (as in KumoMTA), so it backs off and can expire.
        tx = q.transaction
        reason = SmtpResponse(code=451, enhanced_code="4.4.4", content=f"mailstream internal: {exc}")
        plan = next_attempt(policy.retry, created=tx.created_at, now=now, attempts_made=tx.num_attempts,
                            expires_at=q.expires_at, rng=random.Random(f"{tx.id}/{tx.num_attempts}"))
        if plan.at is None:
            q = _advance(q, now, status="expired", num_attempts=tx.num_attempts + 1, next_attempt_at=None,
                         final_reason=f"expired: {plan.reason}")
            effects.delete = True
            effects.statuses.append(q.transaction)
            effects.logs.append(_log("Expiration", q.transaction, q, reason, now))
            return effects
        q = _advance(q, now, status="deferred", num_attempts=tx.num_attempts + 1, next_attempt_at=plan.at)
        effects.logs.append(_log("TransientFailure", q.transaction, q, reason, now))
    else:
        q = _advance(q, now, status="ready", next_attempt_at=None, egress_pool=task.egress_pool)
        effects.tasks.append(task)
    effects.state = q
    effects.statuses.append(q.transaction)
    return effects


def on_accepted(msg: AcceptedMessage, partition: int, policy: SchedulerPolicy, now: datetime) -> Effects:
    tx = TransactionStatus(
        id=msg.id, version=0, status="scheduled", queue=msg.queue, tenant=msg.tenant, campaign=msg.campaign,
        sender=msg.sender, recipient=msg.recipient, message_id=msg.message_id, created_at=msg.received_at,
        updated_at=msg.received_at, next_attempt_at=msg.send_at, egress_pool=policy.egress_pool)
    q = QueuedMessage(accepted_partition=partition, body=msg.body, routing_domain=msg.routing_domain,
                      domain=msg.domain, priority=msg.priority, send_at=msg.send_at, expires_at=msg.expires_at,
                      transaction=tx)
    if msg.queue == NULL_QUEUE:
        q = _advance(q, now, status="cancelled", final_reason="discarded: the null queue discards its messages")
        return Effects(delete=True, statuses=[q.transaction])
    if msg.send_at is not None and msg.send_at > now:
        return Effects(state=q)  # waits, as 'scheduled', for its time (status v0 already says so)
    return _dispatch(q, policy, now, Effects())


def on_response(q: QueuedMessage | None, resp: DeliveryResponse, policy: SchedulerPolicy, now: datetime,
                rng: random.Random) -> Effects:
    """Fold one attempt's outcome in; a response for an attempt that is not outstanding changes nothing."""
    if q is None or q.transaction.status not in ("ready", "in_delivery") \
            or resp.attempt != q.transaction.num_attempts + 1:
        return Effects()
    record = AttemptRecord(attempt=resp.attempt, outcome=resp.outcome, response=resp.response,
                           egress_source=resp.egress_source, egress_path=resp.egress_path,
                           peer_address=resp.peer_address, started_at=resp.started_at,
                           completed_at=resp.completed_at)
    tx = q.transaction
    attempts = (*tx.attempts, record)
    if resp.outcome == "DELIVERED":
        q = _advance(q, now, status="delivered", num_attempts=resp.attempt, attempts=attempts,
                     final_reason="delivered")
        return Effects(delete=True, statuses=[q.transaction],
                       logs=[_log("Delivery", q.transaction, q, resp.response, now, attempt=resp)])
    if resp.outcome == "PERMANENT":
        r = resp.response
        verdict = policy.classifier.classify(r.code, r.enhanced_code, r.content)
        q = _advance(q, now, status="bounced", num_attempts=resp.attempt, attempts=attempts,
                     bounce_classification=verdict.bounce_class, bounce_type=verdict.bounce_type,
                     final_reason=f"bounced: {r}")
        return Effects(delete=True, statuses=[q.transaction], logs=[
            _log("Bounce", q.transaction, q, r, now, attempt=resp, bounce_class=verdict.bounce_class)])
    plan = next_attempt(policy.retry, created=tx.created_at, now=now, attempts_made=tx.num_attempts,
                        expires_at=q.expires_at, rng=rng)
    failure = _log("TransientFailure", tx, q, resp.response, now, attempt=resp)
    if plan.at is None:
        expiry = SmtpResponse(code=551, enhanced_code="5.4.7", content=plan.reason)
        q = _advance(q, now, status="expired", num_attempts=resp.attempt, attempts=attempts,
                     next_attempt_at=None, final_reason=f"expired: {plan.reason}")
        return Effects(delete=True, statuses=[q.transaction], logs=[
            failure.model_copy(update={"num_attempts": resp.attempt}),
            _log("Expiration", q.transaction, q, expiry, now, attempt=resp)])
    q = _advance(q, now, status="deferred", num_attempts=resp.attempt, attempts=attempts,
                 next_attempt_at=plan.at)
    return Effects(state=q, statuses=[q.transaction],
                   logs=[failure.model_copy(update={"num_attempts": resp.attempt})])


def on_due(q: QueuedMessage | None, policy: SchedulerPolicy, now: datetime) -> Effects:
    """A deferred or scheduled message whose time has come goes out again."""
    if q is None or q.transaction.status not in ("deferred", "scheduled"):
        return Effects()
    due = q.transaction.next_attempt_at
    if due is not None and due > now:
        return Effects()
    return _dispatch(q, policy, now, Effects())
