"""Messages by status per (tenant, campaign, egress pool): what stage 1 publishes for the capacity API.

Messages still in the scheduled queue are counted from the stage's own table (restored with it);
finished ones from totals kept in the changelog, one write per finished message, so the counts
survive restarts and move with the partition.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mailstream.events.records import QueuedMessage, StatusCounts, TransactionStatus
from mailstream.events.serde import decode
from mailstream.scheduler.queue_keys import Row, Totals


@dataclass(frozen=True, slots=True)
class Filed:
    """What the stage keeps of a queued message besides its record: where it is counted and held."""

    queue: str
    tenant: str | None
    campaign: str | None
    domain: str
    pool: str
    status: str

    @classmethod
    def of(cls, q: QueuedMessage) -> Filed:
        tx = q.transaction
        return cls(tx.queue, tx.tenant, tx.campaign, q.domain, tx.egress_pool or "", tx.status)

    @property
    def row(self) -> Row:
        return self.tenant, self.campaign, self.pool


class Tally:
    def __init__(self) -> None:
        self.filed: dict[str, Filed] = {}
        self._live: dict[Row, Counter[str]] = {}
        self._final: dict[Row, Counter[str]] = {}
        self._shared: dict[Filed, Filed] = {}  # one object per (queue, status, ...): millions of messages share few

    def file(self, tx_id: str, filed: Filed | None) -> None:
        """The message's new filing (None: it left the queue)."""
        old = self.filed.pop(tx_id, None)
        if old is not None:
            live = self._live[old.row]
            live[old.status] -= 1
            if not +live:
                del self._live[old.row]
        if filed is not None:
            filed = self.filed[tx_id] = self._shared.setdefault(filed, filed)
            self._live.setdefault(filed.row, Counter())[filed.status] += 1

    def finish(self, status: TransactionStatus) -> tuple[Totals, StatusCounts]:
        """Count a final status; returns the changelog entry of the row's new totals."""
        row: Row = (status.tenant, status.campaign, status.egress_pool or "")
        totals = self._final.setdefault(row, Counter())
        totals[status.status] += 1
        return Totals(row), StatusCounts(tenant=row[0], campaign=row[1], egress_pool=row[2], counts=dict(totals))

    def restore_totals(self, value: bytes) -> None:
        counts = decode(value, StatusCounts)
        self._final[(counts.tenant, counts.campaign, counts.egress_pool)] = Counter(counts.counts)

    def tenants(self) -> set[str | None]:
        return {row[0] for row in (*self._live, *self._final)}

    def rows(self, tenant: str | None) -> tuple[StatusCounts, ...]:
        rows = sorted(
            {row for row in (*self._live, *self._final) if row[0] == tenant}, key=lambda r: (r[1] or "", r[2])
        )
        return tuple(
            StatusCounts(
                tenant=t,
                campaign=c,
                egress_pool=p,
                counts=dict(
                    sorted((+(self._live.get((t, c, p), Counter()) + self._final.get((t, c, p), Counter()))).items())
                ),
            )
            for t, c, p in rows
        )
