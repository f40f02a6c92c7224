"""Stage 1, the scheduled queues: accept, wait (send_at, windows, tenant and queue limits), promote, retry.

Input topics mail.accepted, mail.responses, mail.dispatched and mail.queue-commands are keyed by
route key (the tenant), so one partition owns every queue of a tenant, counts the tenant's limits
alone and applies its suspensions. Promoted messages go to mail.ready, keyed by egress group, where
stage 2 picks the source (and where a cancel notice recalls a message stage 2 still holds). Every few
seconds the counts by status and the queue controls in force go to mail.queue-stats for the capacity API.
"""

from __future__ import annotations

import random
import sys
from collections import deque
from collections.abc import Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, partial

from mailstream.core.backoff import RetryPolicy
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.daily_limit import day_of, next_reset, remaining
from mailstream.core.fair_queue import FairQueue
from mailstream.core.queue_scope import QueueScope
from mailstream.core.queue_state import ACTIVE, Verdict
from mailstream.core.send_window import all_open, next_open_all
from mailstream.core.throttle import Gcra, admit
from mailstream.events.handler import Writes
from mailstream.events.records import (
    ADMIN_ISSUER,
    AcceptedMessage,
    DeliveryResponse,
    Dispatched,
    EgressVerdict,
    LimitState,
    OutOfBandReport,
    QueueCommand,
    QueuedMessage,
    QueueOperation,
    QueueStats,
    Suppression,
    SuppressionRemoved,
)
from mailstream.events.serde import decode, encode
from mailstream.events.topics import (
    ACCEPTED,
    DISPATCHED,
    EVENTS,
    QUEUE_COMMANDS,
    QUEUE_RESULTS,
    QUEUE_STATS,
    READY,
    RESPONSES,
    STATUS,
)
from mailstream.observability.logs import get_logger
from mailstream.scheduler import queue_keys, stats_records
from mailstream.scheduler.holds import Holds
from mailstream.scheduler.lifecycle import (
    AT_EGRESS,
    LIVE,
    QUEUED,
    SUSPENDED,
    WAITING,
    Effects,
    cancel,
    cancelled,
    deadline,
    expire,
    held,
    on_accepted,
    on_dispatched,
    on_response,
    on_verdict,
    promote,
    refuse,
    restate,
    resume,
    stamped,
    suspend,
    then,
)
from mailstream.scheduler.operations import (
    NOT_HERE,
    OperationBook,
    OperationRefused,
    Pending,
    as_command,
    is_control,
    may_touch,
    operate,
    scope_of,
)
from mailstream.scheduler.packed import PackedValues
from mailstream.scheduler.policy import Policies, QueuePolicy
from mailstream.scheduler.queue_keys import (
    Control,
    Expiring,
    Finished,
    Message,
    Operation,
    QueueRate,
    TenantLimit,
    Totals,
)
from mailstream.scheduler.reports import FinishedBook
from mailstream.scheduler.reports import apply as apply_report
from mailstream.scheduler.shaping import Shaped, ShapingBook
from mailstream.scheduler.shaping_queues import shape_queues
from mailstream.scheduler.stage import Coalesced, Limits, Snapshots, Timers, counted, daily, entries, handler_call, send
from mailstream.scheduler.suppressions import SuppressionBook, bounce_entry, request
from mailstream.scheduler.tally import Filed, Tally

log = get_logger(__name__)
INPUTS = (ACCEPTED.name, RESPONSES.name, DISPATCHED.name, QUEUE_COMMANDS.name)  # all keyed by route key
CLOSED_HORIZON = timedelta(days=1)  # windows that never open together are looked at again daily
CANCELLED_BY_REQUEST = "cancelled by request"
HOT = 512  # decoded messages kept per partition, due now or at stage 2: they are looked at again soon


def _moved(q: QueuedMessage, effects: Effects) -> bool:
    """Whether a control's verdict changed the message's status (held, released, cancelled, recalled), rather than
    only restating its queue's state."""
    return (
        effects.recall is not None
        or any(s.status != q.transaction.status for s in effects.statuses)
        or (effects.state is not None and effects.state.cancel_reason != q.cancel_reason)
    )


@dataclass(slots=True)
class QueueBook:
    """One partition's scheduled queues: messages by id, who waits for what, the limit counters."""

    messages: PackedValues = field(default_factory=PackedValues)  # encoded QueuedMessage: bodies never here
    lanes: FairQueue = field(default_factory=FairQueue)  # due now, by priority, round robin over queues
    timers: Timers = field(default_factory=Timers)  # send_at, retry and expiry instants
    limits: Limits[queue_keys.Scope] = field(default_factory=Limits)
    tally: Tally = field(default_factory=Tally)  # counts by status; where each message is filed
    holds: Holds = field(default_factory=Holds)  # queue states and bounces in force
    # messages a control that changed may concern, or an operation's candidates (tagged with its id)
    recheck: deque[tuple[str, str | None]] = field(default_factory=deque)
    operations: OperationBook = field(default_factory=OperationBook)  # operations still being applied
    hot: dict[str, QueuedMessage] = field(default_factory=dict)  # decoded, of some messages at stage 2
    suppressions: SuppressionBook = field(default_factory=SuppressionBook)  # entries that expire
    finished: FinishedBook = field(default_factory=FinishedBook)  # final statuses, for reports by mail
    shaping: ShapingBook = field(default_factory=ShapingBook)  # shaping rules' counts and actions on queues


def _matching(
    book: QueueBook, scope: QueueScope, statuses: Set[str], op: str | None = None
) -> list[tuple[str, str | None]]:
    return [
        (tx, op)
        for tx, f in book.tally.filed.items()
        if f.status in statuses and scope.matches(f.queue, f.tenant, f.campaign, f.domain)
    ]


class QueueStage:
    def __init__(
        self,
        policies: Policies,
        *,
        classifier: BounceClassifier | None = None,
        rng: random.Random | None = None,
        promote_budget: int = 2000,
        snapshot_every: timedelta = timedelta(seconds=2),
    ) -> None:
        self.policies = policies
        self.classifier = classifier or BounceClassifier.default()
        self.rng = rng or random.Random()
        self.books: dict[int, QueueBook] = {}
        self.budget = promote_budget
        self.snapshots = Snapshots(QUEUE_STATS, snapshot_every)
        self.blank: set[str] = set()  # mail.queue-stats slots published empty

    # -- PartitionHandler ------------------------------------------------------------------------
    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None:
        book = self.books[partition] = QueueBook()
        for key, value in entries(state, queue_keys.parse, partition):
            match key:
                case Message(tx_id):
                    book.messages[sys.intern(tx_id)] = value
                case QueueRate() | TenantLimit():
                    book.limits.restore(key, value)
                case Control():
                    book.holds.restore(value)
                case Totals():
                    book.tally.restore_totals(value)
                case Expiring():
                    book.suppressions.restore(key, value)
                case Finished(tx_id):
                    book.finished.restore(tx_id, value)
                case Shaped():
                    book.shaping.restore(value)
                case Operation():
                    book.operations.restore(value)
        for tx_id, value in book.messages.items():
            q = decode(value, QueuedMessage)
            self._index(book, q)
            book.tally.file(tx_id, Filed.of(q))
        book.messages.pack()
        book.finished.pack()
        if len(book.holds):  # a control's application may have been cut short: look at every candidate again
            book.recheck.extend((tx, None) for tx, f in book.tally.filed.items() if f.status in LIVE)
        for pending in list(book.operations.pending.values()):  # so may an operation's: it goes on
            self._candidates(book, pending)
        for prefix in (f"{partition}/", f"{partition}#"):  # another owner may have published since
            self.snapshots.forget(prefix)
            self.blank -= {k for k in self.blank if k.startswith(prefix)}

    def revoked(self, partition: int) -> None:
        self.books.pop(partition, None)

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        with handler_call(out, lambda: self._pack([partition])) as batched:
            self._on_record(partition, topic, value, now, batched)

    def on_tick(self, now: datetime, out: Writes) -> None:
        with handler_call(out, lambda: self._pack(list(self.books))) as batched:
            self._on_tick(now, batched)

    def _pack(self, partitions: list[int]) -> None:
        for partition in partitions:
            if partition in self.books:
                self.books[partition].messages.pack()
                self.books[partition].finished.pack()

    def _on_record(self, partition: int, topic: str, value: bytes, now: datetime, out: Coalesced) -> None:
        book = self.books.setdefault(partition, QueueBook())
        if topic == ACCEPTED.name:
            msg = decode(value, AcceptedMessage)
            if msg.id in book.messages:
                return  # ingest retried a send: the message is already queued
            policy = self._policy_of_accepted(msg)
            effects = on_accepted(msg, partition, policy.egress_pool, priority=policy.priority)
            verdict = book.holds.verdict(msg.queue, msg.tenant, msg.campaign, msg.domain, now)
            if effects.state is not None and verdict.refusal is not None and verdict.bounce is None:
                effects = refuse(effects.state, now, *verdict.refusal)  # stage 1 decides, whatever ingest saw
            self._apply(book, partition, msg.id, effects, out, now, verdict)
        elif topic == RESPONSES.name:
            resp = RESPONSES.decode(value)
            q = self._load(book, resp.id)
            if isinstance(resp, EgressVerdict):  # stage 2 ended the attempt unsent
                self._apply(book, partition, resp.id, on_verdict(q, resp, now), out, now)
            else:
                if isinstance(resp, DeliveryResponse) and self.policies.shaping_rules:
                    for shaped in shape_queues(self.policies, book.shaping, book.holds, q, resp, now, out, partition):
                        book.recheck.extend(_matching(book, shaped, LIVE))
                retry = self._policy(q).retry if q else RetryPolicy()  # no message: the response is moot
                self._apply(
                    book, partition, resp.id, on_response(q, resp, retry, self.classifier, now, self.rng), out, now
                )
        elif topic == DISPATCHED.name:
            notice = decode(value, Dispatched)
            self._apply(book, partition, notice.id, on_dispatched(self._load(book, notice.id), notice, now), out, now)
        elif topic == QUEUE_COMMANDS.name:
            command = QUEUE_COMMANDS.decode(value)
            if isinstance(command, Suppression | SuppressionRemoved):  # this partition owns the entry
                book.suppressions.apply(command, partition, out)
            elif isinstance(command, OutOfBandReport):
                self._report(book, partition, command, now, out)
            elif isinstance(command, QueueOperation):
                self._operation(book, partition, command, now, out)
            elif command.transaction_id is not None:
                self._cancel_one(book, partition, command, now, out)
            else:
                scope = book.holds.apply(command, now, out, partition)
                if scope is not None:
                    log.info("queue_command", action=command.action, scope=scope.key, partition=partition)
                    book.recheck.extend(_matching(book, scope, LIVE))
        self._promote(book, partition, now, out, self._recheck(book, partition, now, out, self.budget))

    def _on_tick(self, now: datetime, out: Coalesced) -> None:
        for partition, book in self.books.items():
            for scope in book.holds.lapse(now, out, partition, busy=bool(book.recheck)):
                book.recheck.extend(_matching(book, scope, LIVE))
            book.suppressions.lapse(now, partition, out)
            if len(book.shaping):
                book.shaping.lapse(now, self.policies.shaping, out, partition)
            book.finished.lapse(now, self.report_window, partition, out)
            for _, tx_id in book.timers.due(now):
                q = self._load(book, tx_id)
                if q is None or q.transaction.status not in QUEUED:
                    continue
                if now >= deadline(q, self._policy(q).retry):
                    self._apply(book, partition, tx_id, expire(q, now, "max_age reached while queued"), out, now)
                elif (
                    q.transaction.status in WAITING
                    and q.transaction.next_attempt_at is not None
                    and q.transaction.next_attempt_at <= now
                ):
                    book.lanes.push(q.transaction.queue, q.priority, tx_id)  # its retry (or send_at) is due
                    book.timers.add(deadline(q, self._policy(q).retry), tx_id)
            book.lanes.wake(now)
            self._promote(book, partition, now, out, self._recheck(book, partition, now, out, self.budget))
        if self.snapshots.due(now):
            self._publish(now, out)

    def shaping_count(self) -> int:
        """Adaptive-shaping actions on queues this worker's partitions hold (metrics)."""
        return sum(b.shaping.acting() for b in self.books.values())

    # -- decisions -------------------------------------------------------------------------------
    def _promote(self, book: QueueBook, partition: int, now: datetime, out: Coalesced, budget: int) -> None:
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
                self._apply(book, partition, tx_id, expire(q, now, "max_age reached while queued"), out, now)
                continue
            verdict = self._verdict(book, q, now)
            if verdict.bounce is not None or verdict.holds:  # cancelled, or out of its lane until resumed
                self._apply(book, partition, tx_id, self._under(verdict, q, now), out, now)
                budget -= 1
                continue
            blocked_until = self._blocked_until(book, q, policy, now)
            if blocked_until is not None:
                book.lanes.push(lane, priority, tx_id, front=True)
                book.lanes.park(lane, blocked_until)
                continue
            self._count(book, partition, q, policy, now, out)
            pool = q.egress_pool or policy.egress_pool  # a rebind's pool, else its queue's
            ready, effects = promote(q, now, pool)
            ready = ready.model_copy(update={"expires_at": deadline(q, policy.retry)})
            send(out, READY, self.policies.group_of(pool), ready)
            self._apply(book, partition, tx_id, effects, out, now)
            budget -= 1

    def _recheck(self, book: QueueBook, partition: int, now: datetime, out: Coalesced, budget: int) -> int:
        """Bring messages in line with the controls now in force (cancel, hold, release, or show the queue's
        new state) and apply the operations to their candidates; returns the budget left."""
        while book.recheck and budget > 0:
            tx_id, op_id = book.recheck.popleft()
            pending = book.operations.pending.get(op_id) if op_id is not None else None
            if op_id is not None:
                if pending is None:
                    continue  # finished already (a candidate filed twice)
                pending.left -= 1
            q = self._load(book, tx_id)
            if q is None or (pending is not None and not may_touch(pending.op, q)):
                if pending is not None and pending.op.message_ids:
                    pending.failed(f"{tx_id} {NOT_HERE}")
                continue
            if pending is not None and not is_control(pending.op):
                effects = self._operate(book, pending, q, now)
            else:
                effects = self._under(self._verdict(book, q, now), q, now)
            if not effects.statuses and effects.state is None and effects.recall is None:
                continue
            self._apply(book, partition, tx_id, effects, out, now)
            if pending is not None and (not is_control(pending.op) or _moved(q, effects)):
                pending.touched(q.transaction.queue, *(s.queue for s in effects.statuses[-1:]))
            budget -= 1
        for outcome in book.operations.flush(partition, now, out, lambda op_id: Operation(op_id).key()):
            send(out, QUEUE_RESULTS, outcome.id, outcome)
            log.info("queue_operation_done", operation=outcome.operation, id=outcome.id, affected=outcome.affected)
        return budget

    def _operate(self, book: QueueBook, pending: Pending, q: QueuedMessage, now: datetime) -> Effects:
        """A one-off operation on one message, then the controls' verdict on what it made of it (a message resumed
        by id stays suspended while its queue is; one rebound into a held queue is held)."""
        try:
            effects = operate(pending.op, q, now, pending.arrived, set(self.policies.pools))
        except OperationRefused as exc:
            pending.failed(f"{q.transaction.id}: {exc}")
            return Effects()
        if effects.state is not None and effects.state.transaction.status in QUEUED:
            follow = self._under(self._verdict(book, effects.state, now), effects.state, now)
            if follow.state is not None:
                effects = then(effects, follow)
        return effects

    def _operation(self, book: QueueBook, partition: int, op: QueueOperation, now: datetime, out: Coalesced) -> None:
        """Start applying an operation: a scope's control is set at once; each candidate is filed for `_recheck`."""
        pending = book.operations.start(op, now)
        if pending is None:
            return
        log.info("queue_operation", operation=op.operation, id=op.id, partition=partition, ids=len(op.message_ids))
        if is_control(op):
            try:
                scope = book.holds.apply(as_command(op), now, out, partition)
            except ValueError as exc:
                pending.failed(str(exc))
                return
            if scope is None:
                return  # nothing changed (an admin's control, or nothing to resume): done with none affected
        self._candidates(book, pending)

    def _candidates(self, book: QueueBook, pending: Pending) -> None:
        op = pending.op
        if op.message_ids:
            found: list[tuple[str, str | None]] = [(tx, op.id) for tx in dict.fromkeys(op.message_ids)]
        else:
            try:
                found = _matching(book, scope_of(op), LIVE, op.id)
            except ValueError as exc:
                pending.failed(str(exc))
                return
        pending.left = len(found)
        book.recheck.extend(found)

    def _under(self, verdict: Verdict, q: QueuedMessage, now: datetime) -> Effects:
        """What the controls' verdict does to a live message; nothing when it is already in line."""
        status = q.transaction.status
        if verdict.bounce is not None and (status in QUEUED or status in AT_EGRESS):
            return cancel(q, now, verdict.bounce)
        holds = verdict.holds or q.held is not None  # its queue's control, or a suspension by id
        if holds and status in WAITING:
            return suspend(q, now)
        if not holds and status == SUSPENDED:
            return resume(q, now)
        if q.transaction.queue_state != verdict.state:
            return restate(q, now)
        return Effects()

    def _verdict(self, book: QueueBook, q: QueuedMessage, now: datetime) -> Verdict:
        tx = q.transaction
        return book.holds.verdict(tx.queue, tx.tenant, tx.campaign, q.domain, now)

    def _cancel_one(
        self, book: QueueBook, partition: int, command: QueueCommand, now: datetime, out: Coalesced
    ) -> None:
        """POST /api/transactions/{id}/cancel: only an admin or the message's own tenant may."""
        tx_id = command.transaction_id or ""
        q = self._load(book, tx_id)
        if q is None or command.action != "cancel":
            return  # already final (or never here): nothing to do
        if command.issued_by not in (ADMIN_ISSUER, f"tenant:{q.transaction.tenant}"):
            log.warning("cancel_refused", transaction=tx_id, issued_by=command.issued_by)
            return
        self._apply(book, partition, tx_id, cancel(q, now, command.reason or CANCELLED_BY_REQUEST), out, now)

    def _report(self, book: QueueBook, partition: int, report: OutOfBandReport, now: datetime, out: Coalesced) -> None:
        """A bounce or complaint received by mail, applied to the finished transaction it names."""
        status = book.finished.get(report.transaction_id)
        if status is None:
            live = report.transaction_id in book.messages
            log.warning("report_unmatched", transaction=report.transaction_id, kind=report.kind, live=live)
            return  # unknown here, past scheduler.report_window, or not finished yet
        outcome = apply_report(report, status, self.classifier, self.policies.suppressing(status.tenant), now)
        if outcome.status is not None:
            send(out, STATUS, outcome.status.id, outcome.status)
            book.finished.keep(outcome.status, self.report_window, partition, out)
        for record in outcome.logs:
            send(out, EVENTS, record.id, record)
        if outcome.suppression is not None:
            request(out, outcome.suppression)
        log.info("report_applied", transaction=status.id, kind=report.kind, status=(outcome.status or status).status)

    @property
    def report_window(self) -> timedelta:
        return self.policies.config.scheduler.report_window

    def _publish(self, now: datetime, out: Coalesced) -> None:
        """Counts by status and queue controls, per tenant, of every owned partition (only what changed)."""
        for partition, book in self.books.items():
            prefix = f"{partition}/"
            tenants = book.tally.tenants() | book.holds.tenants()
            tenants |= {key[len(prefix) :] or None for key in self.snapshots.keys(prefix)}  # so emptied ones say so
            for tenant in tenants:  # in records that fit the topic, however many campaigns and controls
                records = stats_records.split(
                    partition, tenant, book.tally.rows(tenant), book.holds.of_tenant(tenant), now
                )
                for slot in range(stats_records.SLOTS):
                    key = stats_records.key(partition, tenant, slot)
                    if slot < len(records):
                        self.blank.discard(key)
                        self.snapshots.offer(out, key, records[slot])
                    elif key not in self.blank:  # an unused slot: emptied once, however often published
                        self.blank.add(key)
                        self.snapshots.offer(out, key, QueueStats(partition=partition, tenant=tenant, as_of=now))

    def _blocked_until(self, book: QueueBook, q: QueuedMessage, policy: QueuePolicy, now: datetime) -> datetime | None:
        """None if the message may go now, else the earliest instant worth another look."""
        if not all_open(policy.windows, now):
            return next_open_all(policy.windows, now) or now + CLOSED_HORIZON
        waits: list[datetime] = []
        if policy.max_message_rate is not None:
            rate = book.limits.get(QueueRate(q.transaction.queue))
            ok, _, retry_after = admit(policy.max_message_rate, Gcra(rate.tat), now)
            if not ok:
                waits.append(now + retry_after)
        tenant = policy.tenant
        if tenant is not None and q.transaction.tenant:
            state = book.limits.get(TenantLimit(q.transaction.tenant))
            if tenant.max_message_rate is not None:
                ok, _, retry_after = admit(tenant.max_message_rate, Gcra(state.tat), now)
                if not ok:
                    waits.append(now + retry_after)
            if remaining(tenant.daily_limit, daily(state), day_of(now, self.policies.reset_zone)) == 0:
                waits.append(next_reset(now, self.policies.reset_zone))
        if len(book.shaping):  # a shaping rule slowed the tenant's (campaign's) queues for this domain
            slowed = book.shaping.wait(q, now)
            if slowed is not None:
                waits.append(slowed)
        return max(waits) if waits else None

    def _count(
        self, book: QueueBook, partition: int, q: QueuedMessage, policy: QueuePolicy, now: datetime, out: Coalesced
    ) -> None:
        """Charge the promotion to the queue's and the tenant's limits (only those that are configured), and to
        the shaping rules slowing its queues."""
        if len(book.shaping):
            book.shaping.charge(q, now, out, partition)
        if policy.max_message_rate is not None:
            scope = QueueRate(q.transaction.queue)
            _, gcra, _ = admit(policy.max_message_rate, Gcra(book.limits.get(scope).tat), now)
            book.limits.set(out, partition, scope, LimitState(tat=gcra.tat))
        tenant = policy.tenant
        if tenant is not None and q.transaction.tenant and (tenant.max_message_rate or tenant.daily_limit):
            tenant_scope = TenantLimit(q.transaction.tenant)
            state = book.limits.get(tenant_scope)
            tat = state.tat
            if tenant.max_message_rate is not None:
                tat = admit(tenant.max_message_rate, Gcra(tat), now)[1].tat
            usage = daily(state).record(day_of(now, self.policies.reset_zone))
            book.limits.set(out, partition, tenant_scope, counted(state, usage, tat=tat))

    # -- state -----------------------------------------------------------------------------------
    def _apply(
        self,
        book: QueueBook,
        partition: int,
        tx_id: str,
        effects: Effects,
        out: Coalesced,
        now: datetime,
        verdict: Verdict | None = None,
    ) -> None:
        """Write the effects, under the controls in force: every status says its queue's state."""
        if len(book.holds):
            if verdict is None:
                q = effects.state or self._load(book, tx_id)
                verdict = self._verdict(book, q, now) if q is not None else ACTIVE
            if effects.state is not None and effects.state.transaction.status in WAITING:
                if verdict.bounce is not None:  # accepted, deferred or resumed into a bounced queue
                    effects = then(effects, cancelled(effects.state, now, verdict.bounce))
                elif verdict.holds:
                    effects = held(effects, now)  # accepted or deferred into a suspended or disabled queue
            effects = stamped(effects, verdict.state)
        elif (effects.state is not None and effects.state.transaction.queue_state != "active") or any(
            s.queue_state != "active" for s in effects.statuses
        ):
            effects = stamped(effects, "active")  # its queue's controls have ended
        if effects.recall is not None:
            send(out, READY, self.policies.group_of(effects.recall.egress_pool), effects.recall)
        for status in effects.statuses:
            send(out, STATUS, status.id, status)
            if status.is_final:
                totals_key, totals = book.tally.finish(status)
                out.put(partition, totals_key.key(), partial(encode, totals))
                book.finished.keep(status, self.report_window, partition, out)
                entry = bounce_entry(status, self.policies.suppressing(status.tenant), now)
                if entry is not None:  # in the bounce's transaction: the list misses no bounce, nor adds one twice
                    request(out, entry)
        for record in effects.logs:
            send(out, EVENTS, record.id, record)
        tx_id = sys.intern(tx_id)  # one string per message, however many indexes name it
        key = Message(tx_id).key()
        if effects.state is not None:
            value = cache(partial(encode, effects.state))  # encoded once, and only if not replaced in this call
            new = tx_id not in book.messages
            book.messages[tx_id] = value
            out.put(partition, key, value, new=new)
            self._keep(book, tx_id, effects.state)
            book.tally.file(tx_id, Filed.of(effects.state))
            self._index(book, effects.state)
        elif effects.delete and tx_id in book.messages:
            del book.messages[tx_id]
            book.hot.pop(tx_id, None)
            out.put(partition, key, None)
            book.tally.file(tx_id, None)

    def _keep(self, book: QueueBook, tx_id: str, q: QueuedMessage) -> None:
        """Keep a message due now or at stage 2 decoded (it is looked at again soon), in a bounded set."""
        if q.transaction.status not in AT_EGRESS and (
            q.transaction.status not in WAITING or q.transaction.next_attempt_at is not None
        ):
            book.hot.pop(tx_id, None)
            return
        if tx_id not in book.hot and len(book.hot) >= HOT:
            del book.hot[next(iter(book.hot))]  # the oldest
        book.hot[tx_id] = q

    def _index(self, book: QueueBook, q: QueuedMessage) -> None:
        """File a waiting message under the instant it wakes, or in its lane if it is due."""
        tx, tx_id = q.transaction, sys.intern(q.transaction.id)
        if tx.status == SUSPENDED:
            book.timers.add(deadline(q, self._policy(q).retry), tx_id)  # out of the lanes, but it still expires
            return
        if tx.status not in WAITING:
            return  # 'ready' or 'in_delivery': stage 2 holds it; its response brings it back here
        if tx.next_attempt_at is not None:
            book.timers.add(tx.next_attempt_at, tx_id)  # its deadline is checked when it fires
        else:
            book.lanes.push(tx.queue, q.priority, tx_id)
            book.timers.add(deadline(q, self._policy(q).retry), tx_id)  # expires even in a parked lane

    def _load(self, book: QueueBook, tx_id: str) -> QueuedMessage | None:
        q = book.hot.get(tx_id)
        if q is not None:
            return q
        raw = book.messages.get(tx_id)
        return decode(raw, QueuedMessage) if raw is not None else None

    def _policy(self, q: QueuedMessage) -> QueuePolicy:
        tx = q.transaction
        return self.policies.queue(tx.tenant, tx.campaign, q.domain, q.routing_domain)

    def _policy_of_accepted(self, msg: AcceptedMessage) -> QueuePolicy:
        return self.policies.queue(msg.tenant, msg.campaign, msg.domain, msg.routing_domain)
