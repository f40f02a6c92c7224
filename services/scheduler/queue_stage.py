"""Stage 1, the scheduled queues: accept, wait (send_at, windows, tenant and queue limits), promote, retry.

Input topics mail.accepted and mail.responses are keyed by route key (the tenant), so one partition
owns every queue of a tenant and counts the tenant's limits alone. Promoted messages go to
mail.ready, keyed by egress group, where stage 2 picks the source.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailstream.core.backoff import RetryPolicy
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.daily_limit import day_of, next_reset
from mailstream.core.fair_queue import FairQueue
from mailstream.core.send_window import all_open, next_open_all
from mailstream.core.throttle import Gcra, admit
from mailstream.events.records import AcceptedMessage, DeliveryResponse, LimitState, QueuedMessage
from mailstream.events.serde import SerdeError, decode, encode
from mailstream.events.topics import ACCEPTED, EVENTS, READY, RESPONSES, STATUS
from mailstream.observability.logs import get_logger
from mailstream.scheduler.lifecycle import WAITING, Effects, deadline, expire, on_accepted, on_response, promote
from mailstream.scheduler.policy import Policies, QueuePolicy
from mailstream.scheduler.stage import Limits, Timers, Writes, restore, send

log = get_logger(__name__)
MESSAGE = "m:"
CLOSED_HORIZON = timedelta(days=1)  # windows that never open together are looked at again daily


@dataclass(slots=True)
class QueueBook:
    """One partition's scheduled queues: messages by id, who waits for what, the limit counters."""

    messages: dict[str, bytes] = field(default_factory=dict)  # encoded QueuedMessage: bodies never here
    lanes: FairQueue = field(default_factory=FairQueue)  # due now, by priority, round robin over queues
    timers: Timers = field(default_factory=Timers)  # send_at, retry and expiry instants
    limits: Limits = field(default_factory=Limits)


class QueueStage:
    def __init__(self, policies: Policies, *, classifier: BounceClassifier | None = None,
                 rng: random.Random | None = None, promote_budget: int = 2000) -> None:
        self.policies = policies
        self.classifier = classifier or BounceClassifier.default()
        self.rng = rng or random.Random()
        self.books: dict[int, QueueBook] = {}
        self.budget = promote_budget

    # -- PartitionHandler ------------------------------------------------------------------------
    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None:
        book = self.books[partition] = QueueBook()
        for tx_id, value in restore(state, book.limits, MESSAGE):
            book.messages[tx_id] = value
            self._index(book, decode(value, QueuedMessage))

    def revoked(self, partition: int) -> None:
        self.books.pop(partition, None)

    def on_record(self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime,
                  out: Writes) -> None:
        book = self.books.setdefault(partition, QueueBook())
        try:
            if topic == ACCEPTED.name:
                msg = decode(value, AcceptedMessage)
                if msg.id in book.messages:
                    return  # ingest retried a send: the message is already queued
                pool = self._policy_of_accepted(msg).egress_pool
                self._apply(book, partition, msg.id, on_accepted(msg, partition, pool), out)
            elif topic == RESPONSES.name:
                resp = decode(value, DeliveryResponse)
                q = self._load(book, resp.id)
                retry = self._policy(q).retry if q else RetryPolicy()  # no message: the response is moot
                self._apply(book, partition, resp.id,
                            on_response(q, resp, retry, self.classifier, now, self.rng), out)
        except SerdeError as exc:
            log.error("record_unreadable", topic=topic, partition=partition, error=str(exc))
            return
        self._promote(book, partition, now, out, self.budget)

    def on_tick(self, now: datetime, out: Writes) -> None:
        for partition, book in self.books.items():
            for _, tx_id in book.timers.due(now):
                q = self._load(book, tx_id)
                if q is None or q.transaction.status not in WAITING:
                    continue
                if now >= deadline(q, self._policy(q).retry):
                    self._apply(book, partition, tx_id, expire(q, now, "max_age reached while queued"), out)
                elif q.transaction.next_attempt_at is not None and q.transaction.next_attempt_at <= now:
                    book.lanes.push(q.transaction.queue, q.priority, tx_id)  # its retry (or send_at) is due
                    book.timers.add(deadline(q, self._policy(q).retry), tx_id)
            book.lanes.wake(now)
            self._promote(book, partition, now, out, self.budget)

    # -- decisions -------------------------------------------------------------------------------
    def _promote(self, book: QueueBook, partition: int, now: datetime, out: Writes, budget: int) -> None:
        while budget > 0:
            item = book.lanes.pop()
            if item is None:
                return
            lane, priority, tx_id = item
            q = self._load(book, tx_id)
            if q is None or q.transaction.status not in WAITING:
                continue  # stale entry: the message moved on
            policy = self._policy(q)
            if now >= deadline(q, policy.retry):
                self._apply(book, partition, tx_id, expire(q, now, "max_age reached while queued"), out)
                continue
            blocked_until = self._blocked_until(book, q, policy, now)
            if blocked_until is not None:
                book.lanes.push(lane, priority, tx_id, front=True)
                book.lanes.park(lane, blocked_until)
                continue
            self._count(book, partition, q, policy, now, out)
            ready, effects = promote(q, now, policy.egress_pool)
            ready = ready.model_copy(update={"expires_at": deadline(q, policy.retry)})
            send(out, READY.name, self.policies.group_of(policy.egress_pool), ready)
            self._apply(book, partition, tx_id, effects, out)
            budget -= 1

    def _blocked_until(self, book: QueueBook, q: QueuedMessage, policy: QueuePolicy,
                       now: datetime) -> datetime | None:
        """None if the message may go now, else the earliest instant worth another look."""
        if not all_open(policy.windows, now):
            return next_open_all(policy.windows, now) or now + CLOSED_HORIZON
        waits: list[datetime] = []
        if policy.max_message_rate is not None:
            ok, _, retry_after = admit(policy.max_message_rate, Gcra(book.limits.get("q:" + q.transaction.queue).tat),
                                       now)
            if not ok:
                waits.append(now + retry_after)
        tenant = policy.tenant
        if tenant is not None and q.transaction.tenant:
            state = book.limits.get("t:" + q.transaction.tenant)
            if tenant.max_message_rate is not None:
                ok, _, retry_after = admit(tenant.max_message_rate, Gcra(state.tat), now)
                if not ok:
                    waits.append(now + retry_after)
            today = day_of(now, self.policies.reset_zone).isoformat()
            if tenant.daily_limit is not None and state.day == today and state.used >= tenant.daily_limit:
                waits.append(next_reset(now, self.policies.reset_zone))
        return max(waits) if waits else None

    def _count(self, book: QueueBook, partition: int, q: QueuedMessage, policy: QueuePolicy, now: datetime,
               out: Writes) -> None:
        """Charge the promotion to the queue's and the tenant's limits (only those that are configured)."""
        if policy.max_message_rate is not None:
            scope = "q:" + q.transaction.queue
            _, gcra, _ = admit(policy.max_message_rate, Gcra(book.limits.get(scope).tat), now)
            book.limits.set(out, partition, scope, LimitState(tat=gcra.tat))
        tenant = policy.tenant
        if tenant is not None and q.transaction.tenant and (tenant.max_message_rate or tenant.daily_limit):
            scope = "t:" + q.transaction.tenant
            state = book.limits.get(scope)
            today = day_of(now, self.policies.reset_zone).isoformat()
            used = state.used + 1 if state.day == today else 1
            tat = state.tat
            if tenant.max_message_rate is not None:
                tat = admit(tenant.max_message_rate, Gcra(tat), now)[1].tat
            book.limits.set(out, partition, scope, state.model_copy(update={"day": today, "used": used, "tat": tat}))

    # -- state -----------------------------------------------------------------------------------
    def _apply(self, book: QueueBook, partition: int, tx_id: str, effects: Effects, out: Writes) -> None:
        for status in effects.statuses:
            send(out, STATUS.name, status.id, status)
        for record in effects.logs:
            send(out, EVENTS.name, record.id, record)
        key = (MESSAGE + tx_id).encode()
        if effects.state is not None:
            value = encode(effects.state)
            book.messages[tx_id] = value
            out.put(partition, key, value)
            self._index(book, effects.state)
        elif effects.delete and tx_id in book.messages:
            del book.messages[tx_id]
            out.put(partition, key, None)

    def _index(self, book: QueueBook, q: QueuedMessage) -> None:
        """File a waiting message under the instant it wakes, or in its lane if it is due."""
        tx = q.transaction
        if tx.status not in WAITING:
            return  # 'ready': stage 2 holds it; its response brings it back here
        if tx.next_attempt_at is not None:
            book.timers.add(tx.next_attempt_at, tx.id)  # its deadline is checked when it fires
        else:
            book.lanes.push(tx.queue, q.priority, tx.id)
            book.timers.add(deadline(q, self._policy(q).retry), tx.id)  # expires even in a parked lane

    def _load(self, book: QueueBook, tx_id: str) -> QueuedMessage | None:
        raw = book.messages.get(tx_id)
        return decode(raw, QueuedMessage) if raw is not None else None

    def _policy(self, q: QueuedMessage) -> QueuePolicy:
        tx = q.transaction
        return self.policies.queue(tx.tenant, tx.campaign, q.domain, q.routing_domain)

    def _policy_of_accepted(self, msg: AcceptedMessage) -> QueuePolicy:
        return self.policies.queue(msg.tenant, msg.campaign, msg.domain, msg.routing_domain)
