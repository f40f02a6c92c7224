"""A transaction's status as typed transitions: version 0 at reception, then one version per change.

`model_copy(update=...)` checks nothing, so a misspelt field or status (`status="delivred"`) used to
be found only when the record was encoded, far from the call. Here the changes are a TypedDict: mypy
refuses an unknown field or a value of the wrong type at the call, and the functions refuse at run
time an unknown field or a status, queue state or bounce type outside its Literal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, Unpack, get_args

from mailstream.core.bounce_classify import BounceType
from mailstream.events.records import (
    AcceptedMessage,
    AttemptRecord,
    MessageStatus,
    QueueState,
    TransactionStatus,
)


class StatusChange(TypedDict, total=False):
    """The fields a transition may change; id, queue, parties and creation never change, and version
    and updated_at are set by `next_version`."""

    status: MessageStatus
    next_attempt_at: datetime | None
    num_attempts: int
    attempts: tuple[AttemptRecord, ...]
    egress_pool: str | None
    bounce_classification: str | None
    bounce_type: BounceType | None
    final_reason: str | None
    queue_state: QueueState
    complaint: str | None


CHANGEABLE = frozenset(StatusChange.__optional_keys__)
_ALLOWED: dict[str, frozenset[Any]] = {
    "status": frozenset(get_args(MessageStatus)),
    "queue_state": frozenset(get_args(QueueState)),
    "bounce_type": frozenset((*get_args(BounceType), None)),
}


def reception_status(msg: AcceptedMessage, egress_pool: str | None = None) -> TransactionStatus:
    """Version 0, 'scheduled': what ingest writes before answering and what stage 1 holds on acceptance
    (stage 1 knows the egress pool, ingest does not)."""
    return TransactionStatus(
        id=msg.id,
        version=0,
        status="scheduled",
        queue=msg.queue,
        tenant=msg.tenant,
        campaign=msg.campaign,
        sender=msg.sender,
        recipient=msg.recipient,
        message_id=msg.message_id,
        created_at=msg.received_at,
        updated_at=msg.received_at,
        next_attempt_at=msg.send_at,
        egress_pool=egress_pool,
    )


def changed(tx: TransactionStatus, **changes: Unpack[StatusChange]) -> TransactionStatus:
    """The same version with `changes` (a status not yet written, corrected before it is)."""
    _check(changes)
    return tx.model_copy(update=changes)


def next_version(tx: TransactionStatus, now: datetime, **changes: Unpack[StatusChange]) -> TransactionStatus:
    """The next version, written at `now`, with `changes`."""
    _check(changes)
    return tx.model_copy(update={**changes, "version": tx.version + 1, "updated_at": now})


def rebound(
    tx: TransactionStatus, now: datetime, *, queue: str, campaign: str | None, egress_pool: str | None
) -> TransactionStatus:
    """The next version in another scheduled queue (and pool): the one transition that changes the queue, a rebind
    by an operator (the tenant, the parties and the id stay)."""
    return tx.model_copy(
        update={
            "queue": queue,
            "campaign": campaign,
            "egress_pool": egress_pool,
            "version": tx.version + 1,
            "updated_at": now,
        }
    )


def _check(changes: StatusChange) -> None:
    unknown = changes.keys() - CHANGEABLE
    if unknown:
        raise TypeError(f"a status transition cannot change {', '.join(sorted(unknown))}")
    for name, allowed in _ALLOWED.items():
        if name in changes and changes[name] not in allowed:  # type: ignore[literal-required]
            raise ValueError(f"{changes[name]!r} is not a {name}")  # type: ignore[literal-required]
