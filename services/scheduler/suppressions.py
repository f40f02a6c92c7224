"""Stage 1's part in suppression lists: it is the one writer of mail.suppressions.

A bounce of a type `suppression.on_bounce` names makes an entry, sent in the bounce's own transaction as a
request on mail.queue-commands keyed by the entry's owner (`suppression_owner`: the tenant's partition, which is
this one for a tenant's mail). The API's additions and removals arrive the same way, so the partition owning an
entry applies every change to it in the order the topic holds them, and writes the result to mail.suppressions.
An entry with an expiry is kept in the changelog (`s:` keys) until then, when the partition replaces it with a
SuppressionRemoved: a removal only the owner makes, so it can never undo a newer addition.
"""

from __future__ import annotations

from datetime import datetime

from mailstream.core.suppression import InvalidAddress, Suppressing, entry_key, normalise
from mailstream.events.handler import Writes
from mailstream.events.records import Suppression, SuppressionRemoved, TransactionStatus
from mailstream.events.serde import decode, encode
from mailstream.events.topics import QUEUE_COMMANDS, SUPPRESSIONS, suppression_owner
from mailstream.observability.logs import get_logger
from mailstream.scheduler.queue_keys import Expiring
from mailstream.scheduler.stage import Timers, send

log = get_logger(__name__)
SCHEDULER = "scheduler"  # created_by / removed_by of what the stage decides itself
EXPIRED = "expired"


def bounce_entry(status: TransactionStatus, rules: Suppressing, now: datetime) -> Suppression | None:
    """The entry a transaction's final bounce makes, if its bounce type suppresses. A bounce without an attempt
    (a queue's state refused it: PolicyRelated, block) says nothing about the address."""
    if status.status != "bounced" or status.bounce_type is None or not rules.suppresses(status.bounce_type):
        return None
    if not status.attempts:
        return None
    try:
        address = normalise(status.recipient)
    except InvalidAddress:
        return None  # not an address a submission could name again
    response = status.attempts[-1].response if status.attempts else None
    return Suppression(
        address=address,
        tenant=status.tenant,
        reason=f"{status.bounce_type} bounce" + (f": {response}" if response is not None else ""),
        source="bounce",
        bounce_classification=status.bounce_classification,
        bounce_type=status.bounce_type,
        response=response,
        transaction_id=status.id,
        created_at=now,
        expires_at=rules.expires_at(status.bounce_type, now),
        created_by=SCHEDULER,
    )


def request(out: Writes, entry: Suppression | SuppressionRemoved) -> None:
    """Ask the entry's owner to apply a change (it may be this very partition)."""
    send(out, QUEUE_COMMANDS, suppression_owner(entry.tenant, entry.address), entry)


class SuppressionBook:
    """One partition's entries that expire, until they do; the entries without expiry need no state here."""

    def __init__(self) -> None:
        self._expiring: dict[str, Suppression] = {}  # by entry key
        self._timers = Timers()

    def restore(self, key: Expiring, value: bytes) -> None:
        entry = decode(value, Suppression)
        if entry.expires_at is not None:
            self._expiring[key.entry] = entry
            self._timers.add(entry.expires_at, key.entry)

    def apply(self, change: Suppression | SuppressionRemoved, partition: int, out: Writes) -> None:
        """An addition replaces whatever the entry was; a removal ends it. Both are published as they are."""
        address = normalise(change.address)  # the API normalised it; a record that is no address fails here
        if address != change.address:
            change = change.model_copy(update={"address": address})
        key = entry_key(change.tenant, address)
        send(out, SUPPRESSIONS, key, change)
        if isinstance(change, Suppression) and change.expires_at is not None:
            self._expiring[key] = change
            self._timers.add(change.expires_at, key)
            out.put(partition, Expiring(key).key(), encode(change))
        elif self._expiring.pop(key, None) is not None:
            out.put(partition, Expiring(key).key(), None)
        log.info("suppression", entry=key, change=type(change).__name__, by=_by(change))

    def lapse(self, now: datetime, partition: int, out: Writes) -> None:
        """Remove the entries whose expiry has come (a timer of a replaced entry finds a later expiry: skipped)."""
        for _, key in self._timers.due(now):
            entry = self._expiring.get(key)
            if entry is None or entry.expires_at is None or entry.expires_at > now:
                continue
            removed = SuppressionRemoved(
                address=entry.address, tenant=entry.tenant, reason=EXPIRED, removed_at=now, removed_by=SCHEDULER
            )
            self.apply(removed, partition, out)


def _by(change: Suppression | SuppressionRemoved) -> str:
    return change.created_by if isinstance(change, Suppression) else change.removed_by
