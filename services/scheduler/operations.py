"""Queue operations on the messages one stage 1 partition holds, as pure decisions, and the book of those still
being applied.

An operation (`QueueOperation`, on mail.queue-commands) names a scope or a list of the partition's message ids. The
stage files each candidate on its recheck queue tagged with the operation, so a large scope is worked through
within the stage's budget like a control's, and keeps the operation (with what it did so far) in its changelog
until the last candidate is done; then it writes the outcome (mail.queue-results) and forgets it, in one
transaction. After a restart the candidates are looked at again: each decision below is a no-op on a message it
already changed, so the count stays exact.

suspend, resume and a scope's bounce set the scope's control (`holds`), whose verdict the stage applies to each
candidate; the rest are one-off: cancel, bounce by id and purge end the message (purge: 'cancelled', logged as an
AdminBounce whose reason says purged; no DSN, as for any admin bounce), retry makes a deferred message due now,
set_priority and rebind change what the message waits with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from mailstream.core.queue_name import QueueName, QueueNameError
from mailstream.core.queue_scope import QueueScope
from mailstream.events.handler import Writes
from mailstream.events.records import (
    ADMIN_ISSUER,
    PendingOperation,
    QueueCommand,
    QueuedMessage,
    QueueOperation,
    QueueOperationOutcome,
)
from mailstream.events.serde import decode, encode
from mailstream.events.status import rebound
from mailstream.scheduler.lifecycle import QUEUED, SUSPENDED, Effects, advance, cancel, suspend

CONTROLS = frozenset({"suspend", "resume"})  # on a scope: a control the holds keep (as is a scope's bounce)
MAX_ERRORS = 100  # an outcome names at most this many failures, then how many more
MAX_QUEUES = 100
NOT_HERE = "is not queued (finished, unknown, or not this key's)"


def is_control(op: QueueOperation) -> bool:
    """Whether the operation sets a scope's control rather than acting once on each message."""
    return not op.message_ids and (op.operation in CONTROLS or op.operation == "bounce")


def scope_of(op: QueueOperation) -> QueueScope:
    return QueueScope(queue=op.queue, tenant=op.tenant, campaign=op.campaign, domain=op.domain)


def as_command(op: QueueOperation) -> QueueCommand:
    """A scope's suspend, resume or bounce as the control command the holds apply."""
    action = "cancel" if op.operation == "bounce" else op.operation
    assert action in ("suspend", "resume", "cancel")
    return QueueCommand(
        id=op.id,
        action=action,
        queue=op.queue,
        tenant=op.tenant,
        campaign=op.campaign,
        domain=op.domain,
        reason=op.reason,
        until=op.until,
        issued_at=op.issued_at,
        issued_by=op.issued_by,
    )


def may_touch(op: QueueOperation, q: QueuedMessage) -> bool:
    """An admin's operation touches any message; a tenant's only its own."""
    return op.issued_by in (ADMIN_ISSUER, f"tenant:{q.transaction.tenant}")


def operate(op: QueueOperation, q: QueuedMessage, now: datetime, arrived: datetime, pools: set[str]) -> Effects:
    """What a one-off operation does to one live message; empty Effects when there is nothing to do (already done,
    or the message is where the operation does not reach). Raises OperationRefused for a named message it cannot
    do."""
    status = q.transaction.status
    reason = op.reason or "by request"
    match op.operation:
        case "cancel" | "bounce":
            return cancel(q, now, reason)
        case "purge":
            return cancel(q, now, f"purged: {reason}")
        case "suspend":
            if q.held is not None or status not in QUEUED:
                return Effects()  # already held by id, or at stage 2 (its attempt goes on)
            state = q.model_copy(update={"held": op.reason or ""})
            if status == SUSPENDED:
                return Effects(state=state)  # held by its queue already: now by id as well
            return suspend(state, now)
        case "resume":
            if q.held is None:
                return Effects()
            state = q.model_copy(update={"held": None})
            return Effects(state=state)  # the stage's verdict then resumes it unless its queue holds it
        case "retry":
            tx = q.transaction
            due = tx.next_attempt_at
            if status != "deferred" or due is None or due <= now or tx.updated_at > arrived:
                return Effects()  # not waiting for a retry, or deferred again since the operation came
            q = advance(q, now, next_attempt_at=now)
            return Effects(state=q, statuses=[q.transaction])
        case "set_priority":
            if op.priority is None or status not in QUEUED or q.priority == op.priority:
                return Effects()
            return Effects(state=q.model_copy(update={"priority": op.priority}))
        case "rebind":
            return _rebind(op, q, now, pools)
    return Effects()


class OperationRefused(ValueError):
    """The operation cannot be done to this message (said in the outcome's errors)."""


def _rebind(op: QueueOperation, q: QueuedMessage, now: datetime, pools: set[str]) -> Effects:
    """To another scheduled queue of the same tenant and recipient domain (its campaign and routing domain from the
    name: scheduling and limits follow from them), and/or to another egress pool; the id and status stay."""
    if q.transaction.status not in QUEUED:
        return Effects()  # at stage 2: its attempt goes on where it is
    tx = q.transaction
    pool = q.egress_pool
    if op.to_pool is not None and op.to_pool != pool:
        if op.to_pool not in pools:
            raise OperationRefused(f"egress pool {op.to_pool!r} is not configured")
        pool = op.to_pool
    queue, campaign, routing_domain = tx.queue, tx.campaign, q.routing_domain
    if op.to_queue is not None and op.to_queue != tx.queue:
        try:
            target = QueueName.parse(op.to_queue)
        except QueueNameError as exc:
            raise OperationRefused(str(exc)) from None
        if tx.tenant is None or target.tenant != tx.tenant or target.domain != q.domain.lower():
            # the tenant's partition owns the message (a message without one is placed by its queue's name)
            raise OperationRefused(f"queue {op.to_queue!r} is not a queue of the message's tenant and domain")
        queue, campaign, routing_domain = op.to_queue, target.campaign, target.routing_domain
    if (queue, pool) == (tx.queue, q.egress_pool):
        return Effects()
    moved = rebound(tx, now, queue=queue, campaign=campaign, egress_pool=pool or tx.egress_pool)
    q = q.model_copy(update={"transaction": moved, "egress_pool": pool, "routing_domain": routing_domain})
    return Effects(state=q, statuses=[q.transaction])


@dataclass(slots=True)
class Pending:
    """An operation the partition is applying: how many of its candidates are still filed, what it did so far."""

    op: QueueOperation
    arrived: datetime
    affected: int = 0
    queues: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0
    left: int = 0
    changed: bool = False

    def touched(self, queue: str, *also: str) -> None:
        self.affected += 1
        for name in (queue, *also):
            if len(self.queues) < MAX_QUEUES:
                self.queues.add(name)
        self.changed = True

    def failed(self, error: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)
        else:
            self.more_errors += 1
        self.changed = True

    def record(self) -> PendingOperation:
        return PendingOperation(
            operation=self.op,
            arrived_at=self.arrived,
            affected=self.affected,
            affected_queues=tuple(sorted(self.queues)),
            errors=(*self.errors, *([f"and {self.more_errors} more"] if self.more_errors else [])),
        )

    def outcome(self, partition: int, now: datetime) -> QueueOperationOutcome:
        kept = self.record()
        return QueueOperationOutcome(
            id=self.op.id,
            operation=self.op.operation,
            partition=partition,
            affected=self.affected,
            affected_queues=kept.affected_queues,
            errors=kept.errors,
            expected=self.op.expected,
            tenant=self.op.tenant,
            completed_at=now,
        )


class OperationBook:
    """The operations one partition is applying, by id (changelog `o:<id>` while they last)."""

    def __init__(self) -> None:
        self.pending: dict[str, Pending] = {}

    def restore(self, value: bytes) -> Pending:
        kept = decode(value, PendingOperation)
        pending = Pending(kept.operation, kept.arrived_at, kept.affected, set(kept.affected_queues))
        pending.errors = list(kept.errors)
        self.pending[kept.operation.id] = pending
        return pending

    def start(self, op: QueueOperation, now: datetime) -> Pending | None:
        """None if the partition has this operation already (a record read twice)."""
        if op.id in self.pending:
            return None
        pending = self.pending[op.id] = Pending(op, now, changed=True)
        return pending

    def flush(
        self, partition: int, now: datetime, out: Writes, key_of: Callable[[str], bytes]
    ) -> list[QueueOperationOutcome]:
        """Keep what changed (under `key_of(id)`); finish (forget, and return the outcomes of) those with no
        candidate left."""
        done: list[QueueOperationOutcome] = []
        for op_id, pending in list(self.pending.items()):
            key = key_of(op_id)
            if pending.left <= 0:
                out.put(partition, key, None)
                done.append(pending.outcome(partition, now))
                del self.pending[op_id]
            elif pending.changed:
                out.put(partition, key, encode(pending.record()))
                pending.changed = False
        return done
