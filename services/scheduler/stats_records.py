"""One tenant's published counts and controls, split into records that fit mail.queue-stats.

A tenant's rows (one per campaign and egress pool, kept as long as their totals) and its controls in force
grow without bound, and a record past the topic's 1 MiB would be refused. So they are cut into up to
`SLOTS` records of about `SLOT_BYTES` each: slot 0 keyed "<partition>/<tenant>" as before, slot n
"<partition>#<n>/<tenant>" (the partition part ends at the first "/", so no tenant name makes two keys
alike). Readers merge every record of a tenant. The slots not in use are published empty (once, and again
after a restart or a reassignment), so one left over from a larger layout is emptied rather than counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from mailstream.events.records import QueueStats, QueueSuspension, StatusCounts
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
SLOT_BYTES = 256 * 1024  # an estimate of the encoded size, with room to spare under the topic's 1 MiB
SLOTS = 16  # 4 MiB of rows and controls per tenant and partition: tens of thousands of campaigns


def key(partition: int, tenant: str | None, slot: int) -> str:
    return f"{partition}{f'#{slot}' if slot else ''}/{tenant or ''}"


def _text(*texts: str | None) -> int:
    return sum(len(t.encode()) + 5 for t in texts if t is not None)  # Avro: a length, then UTF-8


def row_size(row: StatusCounts) -> int:
    return 8 + _text(row.tenant, row.campaign, row.egress_pool) + sum(_text(s) + 10 for s in row.counts)


def control_size(c: QueueSuspension) -> int:
    return 32 + _text(c.id, c.queue, c.tenant, c.campaign, c.domain, c.reason, c.issued_by, c.state)


def _cut(
    rows: tuple[StatusCounts, ...], controls: tuple[QueueSuspension, ...], budget: int
) -> Iterator[tuple[list[StatusCounts], list[QueueSuspension]]]:
    slot_rows: list[StatusCounts] = []
    slot_controls: list[QueueSuspension] = []
    used = 0
    items: list[tuple[int, StatusCounts | QueueSuspension]] = [(row_size(r), r) for r in rows]
    items += [(control_size(c), c) for c in controls]
    for size, item in items:
        if used and used + size > budget:
            yield slot_rows, slot_controls
            slot_rows, slot_controls, used = [], [], 0
        if isinstance(item, StatusCounts):
            slot_rows.append(item)
        else:
            slot_controls.append(item)
        used += size
    yield slot_rows, slot_controls


def split(
    partition: int,
    tenant: str | None,
    rows: tuple[StatusCounts, ...],
    controls: tuple[QueueSuspension, ...],
    now: datetime,
    budget: int = SLOT_BYTES,
) -> list[QueueStats]:
    """The records of the slots in use, from slot 0 (at least one, at most `SLOTS`); past them, what does not fit
    is left out, logged. The publisher empties the other slots."""
    records = [
        QueueStats(partition=partition, tenant=tenant, rows=tuple(r), suspensions=tuple(c), as_of=now)
        for r, c in _cut(rows, controls, budget)
    ]
    if len(records) > SLOTS:
        kept = records[:SLOTS]
        log.error(
            "queue_stats_truncated",
            partition=partition,
            tenant=tenant,
            rows_left_out=sum(len(r.rows) for r in records[SLOTS:]),
            controls_left_out=sum(len(r.suspensions) for r in records[SLOTS:]),
        )
        return kept
    return records
