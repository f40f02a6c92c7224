"""A message's life in its scheduled queue, as pure decisions: (state, event, now) -> (state, effects).

The queue stage applies these effects (state writes, topic sends) inside one Kafka transaction;
nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Unpack

from mailstream.core.backoff import RetryPolicy, next_attempt
from mailstream.core.bounce_classify import BounceClassifier, Classification
from mailstream.core.disposition_class import ADMIN_BOUNCE, EXPIRED, REFUSED, classify_disposition
from mailstream.core.queue_name import NULL_QUEUE
from mailstream.events.legacy import as_egress_verdict
from mailstream.events.records import (
    AcceptedMessage,
    AttemptRecord,
    CancelNotice,
    DeliveryResponse,
    Dispatched,
    EgressVerdict,
    LogRecord,
    LogRecordType,
    QueuedMessage,
    QueueState,
    ReadyMessage,
    SmtpResponse,
    TransactionStatus,
)
from mailstream.events.status import StatusChange, changed, next_version, reception_status
from mailstream.events.topics import MESSAGE_LIFETIME

WAITING = frozenset({"scheduled", "deferred"})  # in the scheduled queue, not yet handed to egress
SUSPENDED: Final = "suspended"  # in the scheduled queue, held there while a suspension covers it
QUEUED = WAITING | {SUSPENDED}  # every status of a message the scheduled queue holds (it expires there)
AT_EGRESS = frozenset({"ready", "in_delivery"})  # handed to stage 2; its response brings it back
LIVE = QUEUED | AT_EGRESS
# A message's status and state record stay far below the topics' 1 MiB however often it is retried and
# whatever a remote server answers: the last attempts only (num_attempts counts them all), replies cut short.
ATTEMPTS_KEPT = 50
REPLY_KEPT = 2000  # characters of an SMTP reply's text


@dataclass(slots=True)
class Effects:
    state: QueuedMessage | None = None  # new state; None with delete=True forgets the message
    delete: bool = False
    statuses: list[TransactionStatus] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    recall: CancelNotice | None = None  # for stage 2, which holds the message's attempt


def log_record(
    kind: LogRecordType,
    tx: TransactionStatus,
    q: QueuedMessage,
    response: SmtpResponse,
    now: datetime,
    *,
    attempt: DeliveryResponse | None = None,
    verdict: Classification | None = None,
) -> LogRecord:
    return LogRecord(
        type=kind,
        id=tx.id,
        sender=tx.sender,
        recipient=tx.recipient,
        queue=tx.queue,
        site=attempt.egress_path if attempt else "",
        size=q.body.size,
        response=response,
        peer_address=attempt.peer_address if attempt else None,
        timestamp=now,
        created=tx.created_at,
        num_attempts=tx.num_attempts,
        bounce_classification=verdict.bounce_class if verdict else None,
        bounce_type=verdict.bounce_type if verdict else None,
        egress_pool=tx.egress_pool,
        egress_source=attempt.egress_source if attempt else None,
        delivery_protocol="ESMTP" if attempt and attempt.outcome in ("DELIVERED", "TRANSIENT", "PERMANENT") else None,
        tenant=tx.tenant,
        campaign=tx.campaign,
        message_id=tx.message_id,
    )


def advance(q: QueuedMessage, now: datetime, **changes: Unpack[StatusChange]) -> QueuedMessage:
    """The message with its transaction's next version (an unknown field or status is refused here)."""
    return q.model_copy(update={"transaction": next_version(q.transaction, now, **changes)})


def deadline(q: QueuedMessage, retry: RetryPolicy) -> datetime:
    """When the message expires wherever it waits: its own expiry, else created + max_age; never later than its
    body is kept (a message accepted before the doors and the config held it to that)."""
    created = q.transaction.created_at
    own = q.expires_at if q.expires_at is not None else created + retry.max_age
    return min(own, created + MESSAGE_LIFETIME)


def on_accepted(msg: AcceptedMessage, partition: int, egress_pool: str, *, priority: int = 5) -> Effects:
    """The message joins its scheduled queue as 'scheduled' (ingest already wrote that status, v0), at its
    own priority, else at `priority`, its queue's."""
    tx = reception_status(msg, egress_pool)
    q = QueuedMessage(
        accepted_partition=partition,
        body=msg.body,
        routing_domain=msg.routing_domain,
        domain=msg.domain,
        priority=priority if msg.priority is None else msg.priority,
        send_at=msg.send_at,
        expires_at=msg.expires_at,
        transaction=tx,
    )
    if msg.queue == NULL_QUEUE:
        discarded = "discarded: the null queue discards its messages"  # the operator's routing: an admin bounce
        q = advance(
            q,
            msg.received_at,
            status="cancelled",
            final_reason=discarded,
            bounce_classification=ADMIN_BOUNCE.bounce_class,
            bounce_type=ADMIN_BOUNCE.bounce_type,
        )
        return Effects(delete=True, statuses=[q.transaction])
    return Effects(state=q)


def expire(q: QueuedMessage, now: datetime, reason: str, *, attempt: DeliveryResponse | None = None) -> Effects:
    response = SmtpResponse(code=551, enhanced_code="5.4.7", content=reason)
    q = advance(
        q,
        now,
        status="expired",
        next_attempt_at=None,
        final_reason=f"expired: {reason}",
        bounce_classification=EXPIRED.bounce_class,
        bounce_type=EXPIRED.bounce_type,
    )
    return Effects(
        delete=True,
        statuses=[q.transaction],
        logs=[log_record("Expiration", q.transaction, q, response, now, attempt=attempt, verdict=EXPIRED)],
    )


def _ready(q: QueuedMessage, now: datetime, egress_pool: str) -> ReadyMessage:
    tx = q.transaction
    return ReadyMessage(
        id=tx.id,
        attempt=tx.num_attempts + 1,
        queue=tx.queue,
        tenant=tx.tenant,
        campaign=tx.campaign,
        sender=tx.sender,
        recipient=tx.recipient,
        domain=q.domain,
        routing_domain=q.routing_domain,
        egress_pool=egress_pool,
        priority=q.priority,
        body=q.body,
        created_at=tx.created_at,
        ready_at=now,
        expires_at=q.expires_at or now,
    )  # a promotion's expires_at is replaced by the caller's deadline


def promote(q: QueuedMessage, now: datetime, egress_pool: str) -> tuple[ReadyMessage, Effects]:
    """Scheduled queue -> egress: the message is 'ready' and waits for a source with capacity."""
    ready = _ready(q, now, egress_pool)
    q = advance(q, now, status="ready", next_attempt_at=None, egress_pool=egress_pool)
    return ready, Effects(state=q, statuses=[q.transaction])


def on_response(
    q: QueuedMessage | None,
    resp: DeliveryResponse,
    retry: RetryPolicy,
    classifier: BounceClassifier,
    now: datetime,
    rng: random.Random,
) -> Effects:
    """Fold one attempt's outcome in; a response for an attempt that is not outstanding changes nothing."""
    unsent = as_egress_verdict(resp)
    if unsent is not None:  # stage 2's verdict as written before it had its own record type
        return on_verdict(q, unsent, now)
    if q is None or not _outstanding(q, resp.attempt):
        return Effects()
    if len(resp.response.content) > REPLY_KEPT:
        cut = resp.response.content[: REPLY_KEPT - 1] + "…"
        resp = resp.model_copy(update={"response": resp.response.model_copy(update={"content": cut})})
    record = AttemptRecord(
        attempt=resp.attempt,
        outcome=resp.outcome,
        response=resp.response,
        egress_source=resp.egress_source,
        egress_path=resp.egress_path,
        peer_address=resp.peer_address,
        started_at=resp.started_at,
        completed_at=resp.completed_at,
    )
    tx = q.transaction
    attempts = (*tx.attempts[1 - ATTEMPTS_KEPT :], record)
    if resp.outcome == "DELIVERED":
        q = advance(q, now, status="delivered", num_attempts=resp.attempt, attempts=attempts, final_reason="delivered")
        return Effects(
            delete=True,
            statuses=[q.transaction],
            logs=[log_record("Delivery", q.transaction, q, resp.response, now, attempt=resp)],
        )
    if resp.outcome == "PERMANENT":
        r = resp.response
        verdict = classify_disposition("bounce", r.code, r.enhanced_code, r.content, classifier=classifier)
        q = advance(
            q,
            now,
            status="bounced",
            num_attempts=resp.attempt,
            attempts=attempts,
            final_reason=f"bounced: {r}",
            bounce_classification=verdict.bounce_class,
            bounce_type=verdict.bounce_type,
        )
        return Effects(
            delete=True,
            statuses=[q.transaction],
            logs=[log_record("Bounce", q.transaction, q, r, now, attempt=resp, verdict=verdict)],
        )
    plan = next_attempt(
        retry, created=tx.created_at, now=now, attempts_made=tx.num_attempts, expires_at=q.expires_at, rng=rng
    )
    q = advance(q, now, num_attempts=resp.attempt, attempts=attempts)
    r = resp.response  # classified on its log record; the status is classified only when the transaction ends
    deferral = classify_disposition("transient", r.code, r.enhanced_code, r.content, classifier=classifier)
    failure = log_record("TransientFailure", q.transaction, q, r, now, attempt=resp, verdict=deferral)
    if q.cancel_reason is not None:  # cancelled during the attempt: it ends here, no retry
        done = cancelled(q, now, q.cancel_reason, attempt=resp)
        done.logs.insert(0, failure)
        return done
    if plan.at is None:
        expired = expire(q, now, plan.reason, attempt=resp)
        expired.logs.insert(0, failure)
        return expired
    q = q.model_copy(update={"transaction": changed(q.transaction, status="deferred", next_attempt_at=plan.at)})
    return Effects(state=q, statuses=[q.transaction], logs=[failure])


def on_verdict(q: QueuedMessage | None, verdict: EgressVerdict, now: datetime) -> Effects:
    """Stage 2 ended the attempt unsent: it expired waiting for egress capacity, or it was recalled."""
    if q is None or not _outstanding(q, verdict.attempt):
        return Effects()
    if verdict.verdict == "EXPIRED":
        return expire(q, now, verdict.reason)
    return cancelled(q, now, q.cancel_reason or verdict.reason)


def _outstanding(q: QueuedMessage, attempt: int) -> bool:
    """The message is at stage 2 and `attempt` is the one it waits for there."""
    return q.transaction.status in AT_EGRESS and attempt == q.transaction.num_attempts + 1


def on_dispatched(q: QueuedMessage | None, notice: Dispatched, now: datetime) -> Effects:
    """Stage 2 emitted the delivery task: 'in_delivery' until the attempt's response, which may come first."""
    if q is None or q.transaction.status != "ready" or notice.attempt != q.transaction.num_attempts + 1:
        return Effects()
    q = advance(q, now, status="in_delivery")
    return Effects(state=q, statuses=[q.transaction])


def suspend(q: QueuedMessage, now: datetime) -> Effects:
    """A waiting message whose queue is suspended stays, 'suspended', until the suspension ends."""
    if q.transaction.status not in WAITING:
        return Effects()
    q = advance(q, now, status=SUSPENDED)
    return Effects(state=q, statuses=[q.transaction])


def resume(q: QueuedMessage, now: datetime) -> Effects:
    """Back to waiting: 'deferred' if an attempt was made (its retry time still holds), else 'scheduled'."""
    if q.transaction.status != SUSPENDED:
        return Effects()
    q = advance(q, now, status="deferred" if q.transaction.num_attempts else "scheduled")
    return Effects(state=q, statuses=[q.transaction])


def held(effects: Effects, now: datetime) -> Effects:
    """The same effects with a waiting new state turned 'suspended' (its queue is suspended).

    A status the effects already emit for that version is rewritten rather than followed by another
    version, so a message accepted or deferred into a suspended queue shows 'suspended' at once.
    """
    state = effects.state
    if state is None or state.transaction.status not in WAITING:
        return effects
    tx = state.transaction
    statuses = list(effects.statuses)
    if statuses and statuses[-1].id == tx.id and statuses[-1].version == tx.version:
        state = state.model_copy(update={"transaction": changed(tx, status=SUSPENDED)})
        statuses[-1] = state.transaction
    else:
        state = advance(state, now, status=SUSPENDED)
        statuses.append(state.transaction)
    return Effects(state=state, delete=effects.delete, statuses=statuses, logs=effects.logs, recall=effects.recall)


def admin_bounce(reason: str) -> SmtpResponse:
    return SmtpResponse(code=551, enhanced_code="5.7.1", content=f"Administrator bounced with reason: {reason}")


def cancelled(q: QueuedMessage, now: datetime, reason: str, *, attempt: DeliveryResponse | None = None) -> Effects:
    """Final 'cancelled', logged as KumoMTA logs an admin bounce."""
    q = advance(
        q,
        now,
        status="cancelled",
        next_attempt_at=None,
        final_reason=f"cancelled: {reason}",
        bounce_classification=ADMIN_BOUNCE.bounce_class,
        bounce_type=ADMIN_BOUNCE.bounce_type,
    )
    response = admin_bounce(reason)
    return Effects(
        delete=True,
        statuses=[q.transaction],
        logs=[log_record("AdminBounce", q.transaction, q, response, now, attempt=attempt, verdict=ADMIN_BOUNCE)],
    )


def cancel(q: QueuedMessage | None, now: datetime, reason: str) -> Effects:
    """A cancel: a message in its scheduled queue ends now; one at stage 2 is recalled (stage 2 answers
    CANCELLED, or the attempt it already dispatched finishes); one in delivery finishes its attempt and
    is not retried. Whatever comes back for a recalled attempt ends it."""
    if q is None or q.cancel_reason is not None:
        return Effects()
    if q.transaction.status in QUEUED:
        return cancelled(q, now, reason)
    if q.transaction.status not in AT_EGRESS:
        return Effects()
    pending = q.model_copy(update={"cancel_reason": reason})
    if q.transaction.status == "in_delivery":
        return Effects(state=pending)
    tx = q.transaction
    recall = CancelNotice(
        id=tx.id,
        attempt=tx.num_attempts + 1,
        queue=tx.queue,
        tenant=tx.tenant,
        egress_pool=tx.egress_pool or "",
        reason=reason,
        cancelled_at=now,
    )
    return Effects(state=pending, recall=recall)


def refuse(q: QueuedMessage, now: datetime, state: str, reason: str | None) -> Effects:
    """A message arriving in a draining or disabled queue: 'bounced' at once, logged as a Rejection."""
    why = f"queue {q.transaction.queue} is {state}" + (f": {reason}" if reason else "")
    q = advance(
        q,
        now,
        status="bounced",
        next_attempt_at=None,
        final_reason=f"refused: {why}",
        bounce_classification=REFUSED.bounce_class,
        bounce_type=REFUSED.bounce_type,
    )
    response = SmtpResponse(code=550, enhanced_code="5.7.1", content=why)
    rejection = log_record("Rejection", q.transaction, q, response, now, verdict=REFUSED)
    return Effects(delete=True, statuses=[q.transaction], logs=[rejection])


def restate(q: QueuedMessage, now: datetime) -> Effects:
    """A new version with the same status, to show its queue's new state."""
    q = advance(q, now)
    return Effects(state=q, statuses=[q.transaction])


def then(first: Effects, second: Effects) -> Effects:
    """`first`'s outputs followed by `second`'s; `second` decides the state."""
    return Effects(
        state=second.state,
        delete=second.delete,
        statuses=first.statuses + second.statuses,
        logs=first.logs + second.logs,
        recall=second.recall or first.recall,
    )


def stamped(effects: Effects, queue_state: QueueState) -> Effects:
    """The same effects with every status written saying the queue's state."""

    def stamp(tx: TransactionStatus) -> TransactionStatus:
        return tx if tx.queue_state == queue_state else changed(tx, queue_state=queue_state)

    state = effects.state
    if state is not None and state.transaction.queue_state != queue_state:
        state = state.model_copy(update={"transaction": stamp(state.transaction)})
    return Effects(
        state=state,
        delete=effects.delete,
        statuses=[stamp(s) for s in effects.statuses],
        logs=effects.logs,
        recall=effects.recall,
    )
