"""The suppression lists as both doors read them: mail.suppressions tailed from its beginning into memory.

The topic is compacted, one record per address ever listed, so each process reads it whole at start-up and
keeps the entries in force (a SuppressionRemoved drops its entry), each as its encoded record beside its
expiry: ~380 bytes an entry, 6 times less than the decoded record, decoded only when it is listed or refuses
a recipient. Until it has read what the topic held at start (`TopicTailer.reached`, not an empty poll),
`refusal` raises `SuppressionsLoading`: a submission then waits (503 / 451) instead of being let past an
entry not read yet. Expiry is the reader's: an entry past its `expires_at` no longer applies, whether or not
stage 1's removal has been read."""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Iterator
from datetime import datetime

from mailstream.core.suppression import InvalidAddress, in_force, matches, normalise
from mailstream.events.kafka import Bootstrap, KafkaUnavailable, TopicTailer
from mailstream.events.records import Suppression, SuppressionRemoved
from mailstream.events.serde import SerdeError, decode, encode
from mailstream.events.topics import SUPPRESSIONS
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
Kept = tuple[datetime | None, bytes]


class SuppressionsLoading(KafkaUnavailable):
    """The list has not been read to where it stood at start-up: try again shortly."""


class SuppressionView:
    def __init__(self) -> None:
        self._lists: dict[str | None, dict[str, Kept]] = {}  # tenant -> address -> (expires_at, encoded entry)
        self._sorted: dict[str | None, list[str]] = {}  # a list's addresses in order, until it next changes
        self.caught_up = asyncio.Event()

    def apply(self, record: Suppression | SuppressionRemoved, encoded: bytes | None = None) -> None:
        """Apply a record of the topic (`encoded`: its value as read, if at hand)."""
        self._sorted.pop(record.tenant, None)
        if isinstance(record, Suppression):
            kept = (record.expires_at, encoded if encoded is not None else encode(record))
            self._lists.setdefault(record.tenant, {})[record.address] = kept
        else:
            entries = self._lists.get(record.tenant, {})
            entries.pop(record.address, None)
            if not entries:
                self._lists.pop(record.tenant, None)

    def entry(self, tenant: str | None, address: str, now: datetime) -> Suppression | None:
        """The tenant's entry for a normalised address, if it is in force."""
        found = self._lists.get(tenant, {}).get(address)
        return decode(found[1], Suppression) if found is not None and in_force(found[0], now) else None

    def refusal(self, tenant: str | None, recipient: str, now: datetime) -> str | None:
        """Why mail of the tenant to `recipient` is refused, or None; SuppressionsLoading before catching up."""
        if not self.caught_up.is_set():
            raise SuppressionsLoading("the suppression list is still being read; try again in a few seconds")
        try:
            address = normalise(recipient)
        except InvalidAddress:
            return None  # not for this check to judge
        found = self.entry(tenant, address, now)
        return None if found is None else f"<{address}> is on the suppression list: {found.reason}"

    def entries(
        self,
        tenant: str | None,
        now: datetime,
        *,
        every_tenant: bool = False,
        search: str | None = None,
        domain: str | None = None,
        source: str | None = None,
        after: tuple[str, str] | None = None,
    ) -> Iterator[Suppression]:
        """Entries in force, by tenant then address; of one tenant, or of all with `every_tenant`. `after`
        (tenant or "", address): only those past it, skipped before any is decoded (a cursor's later pages)."""
        tenants = sorted(self._lists, key=lambda t: t or "") if every_tenant else [tenant]
        for name in tenants:
            if after is not None and (name or "") < after[0]:
                continue
            listed = self._lists.get(name)
            if not listed:
                continue
            addresses = self._sorted.get(name)
            if addresses is None:  # half a second for a million: once per change of the list, not per page
                addresses = self._sorted[name] = sorted(listed)
            start = bisect_right(addresses, after[1]) if after is not None and (name or "") == after[0] else 0
            for i in range(start, len(addresses)):
                address = addresses[i]
                kept = listed.get(address)  # None: removed since this listing began
                if kept is None:
                    continue
                expires_at, encoded = kept
                if in_force(expires_at, now) and matches(address, search=search, domain=domain):
                    found = decode(encoded, Suppression)
                    if source is None or found.source == source:
                        yield found

    async def run(self, bootstrap: Bootstrap) -> None:
        """Tail the topic from its beginning, forever."""
        tailer = TopicTailer(bootstrap, SUPPRESSIONS.name, SUPPRESSIONS.partitions, {})
        try:
            ends = await _end_offsets(tailer)
            while True:
                for msg in await tailer.poll_batch(timeout=0.2):
                    try:
                        self.apply(SUPPRESSIONS.decode(msg.value()), msg.value())
                    except SerdeError as exc:  # a poison record must not stop the view
                        log.error("suppression_record_unreadable", offset=msg.offset(), error=str(exc))
                if not self.caught_up.is_set() and await tailer.reached(ends):
                    self.caught_up.set()
                    log.info("suppressions_caught_up", tenants=len(self._lists))
        finally:
            await tailer.close()


async def _end_offsets(tailer: TopicTailer) -> dict[int, int]:
    while True:
        try:
            return await tailer.end_offsets()
        except KafkaUnavailable as exc:  # the cluster is away, or the topic's leaders are not elected yet
            log.warning("suppressions_end_offsets_unavailable", error=str(exc))
            await asyncio.sleep(1.0)
