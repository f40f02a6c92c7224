"""Stage 1's changelog keys: each shape it writes, built and parsed here alone.

    m:<transaction id>         a queued message (QueuedMessage)
    l:q:<queue>                a queue's message rate (LimitState)
    l:t:<tenant>               a tenant's message rate and day count (LimitState)
    z:<queue scope key>        a scope's queue state (QueueSuspension)
    x:<queue scope key>        a scope's admin bounce (QueueSuspension)
    c:<[tenant,campaign,pool]> finished messages by status (StatusCounts)
    s:<tenant>!<address>       a suppression list entry that expires, until it does (Suppression)
    f:<transaction id>         a finished transaction's final status, for reports by mail (TransactionStatus)
    a:<rule>|<queue scope key> a shaping rule's counted replies and action on a tenant's queues (ShapingControl)
    o:<operation id>           a queue operation still being applied (PendingOperation)

The bytes are the changelog's format: state already written restores only if they never change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Literal

from mailstream.scheduler.shaping import SHAPED, Shaped
from mailstream.scheduler.stage import LIMIT, LimitScope, MalformedKey, split

MESSAGE = "m:"
STATE = "z:"
BOUNCE = "x:"
TOTALS = "c:"
SUPPRESSED = "s:"
FINISHED = "f:"
OPERATION = "o:"
QUEUE_RATE = "q:"
TENANT_LIMIT = "t:"
Row = tuple[str | None, str | None, str]  # tenant, campaign, egress pool


@dataclass(frozen=True, slots=True)
class Message:
    tx_id: str

    def key(self) -> bytes:
        return (MESSAGE + self.tx_id).encode()


@dataclass(frozen=True, slots=True)
class QueueRate(LimitScope):
    KIND: ClassVar[str] = QUEUE_RATE  # name: the queue


@dataclass(frozen=True, slots=True)
class TenantLimit(LimitScope):
    KIND: ClassVar[str] = TENANT_LIMIT  # name: the tenant


@dataclass(frozen=True, slots=True)
class Control:
    """A queue control in force on a scope (`QueueScope.key`): its state, or a bounce."""

    kind: Literal["state", "bounce"]
    scope: str

    def key(self) -> bytes:
        return ((BOUNCE if self.kind == "bounce" else STATE) + self.scope).encode()


@dataclass(frozen=True, slots=True)
class Totals:
    row: Row

    def key(self) -> bytes:
        return (TOTALS + json.dumps(self.row, separators=(",", ":"))).encode()


@dataclass(frozen=True, slots=True)
class Expiring:
    """A suppression list entry with an expiry, kept so that the stage removes it then (`entry`: its key)."""

    entry: str

    def key(self) -> bytes:
        return (SUPPRESSED + self.entry).encode()


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished transaction, kept for `scheduler.report_window` (scheduler.reports)."""

    tx_id: str

    def key(self) -> bytes:
        return (FINISHED + self.tx_id).encode()


@dataclass(frozen=True, slots=True)
class Operation:
    """A queue operation the partition is still applying (scheduler.operations)."""

    op_id: str

    def key(self) -> bytes:
        return (OPERATION + self.op_id).encode()


Scope = QueueRate | TenantLimit
Key = Message | Scope | Control | Totals | Expiring | Finished | Shaped | Operation


_SCOPES: dict[str, type[Scope]] = {QueueRate.KIND: QueueRate, TenantLimit.KIND: TenantLimit}


def parse_scope(scope: str) -> Scope:
    kind, name = split(scope, tuple(_SCOPES))
    return _SCOPES[kind](name)


def parse(raw: bytes) -> Key:
    """The key's shape; MalformedKey if it has none of them."""
    kind, rest = split(raw, (MESSAGE, LIMIT, STATE, BOUNCE, TOTALS, SUPPRESSED, FINISHED, SHAPED, OPERATION))
    if kind == MESSAGE:
        return Message(rest)
    if kind == SHAPED:
        return Shaped(rest)
    if kind == FINISHED:
        return Finished(rest)
    if kind == OPERATION:
        return Operation(rest)
    if kind == SUPPRESSED:
        return Expiring(rest)
    if kind == LIMIT:
        return parse_scope(rest)
    if kind in (STATE, BOUNCE):
        return Control("bounce" if kind == BOUNCE else "state", rest)
    return Totals(_row(rest))


def _row(text: str) -> Row:
    try:
        row = json.loads(text)
    except ValueError:
        row = None
    if not (
        isinstance(row, list)
        and len(row) == 3
        and all(v is None or isinstance(v, str) for v in row[:2])
        and isinstance(row[2], str)
    ):
        raise MalformedKey(f"totals key {TOTALS}{text!r} is not [tenant, campaign, egress pool]")
    return row[0], row[1], row[2]
