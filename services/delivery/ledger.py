"""The worker's answers and the offsets they finish, committed together: one Kafka transaction every
`interval` carries the responses written since the last one and each partition's checkpoint
(`mailstream.delivery.progress`), so a response is on mail.responses exactly when the group's committed
offsets say its task is done. A restarted worker, or the next owner of a partition, therefore skips what
was answered and sends again only what was in flight.

A transaction that fails (the cluster gone, the group rebalanced under it) is retried with backoff with
the same answers and a newer checkpoint; the answers stay in memory until a commit takes them, and count
against the worker's in-flight limit meanwhile.
"""

from __future__ import annotations

import time

from mailstream.delivery.progress import Partition, Progress
from mailstream.events.kafka import EventConsumer, KafkaUnavailable
from mailstream.events.transactions import OffsetTransactions, Outgoing
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


class Ledger:
    def __init__(self, consumer: EventConsumer, writer: OffsetTransactions, interval: float) -> None:
        self.progress = Progress()
        self._consumer = consumer
        self._writer = writer
        self._interval = interval
        self._answers: list[Outgoing] = []
        self._last: dict[Partition, tuple[int, str]] = {}
        self._failures = 0
        self._next = 0.0  # time.monotonic() of the next commit
        self.ok = True  # the last commit went through (or nothing needed one)
        self.busy_since: float | None = None  # time.monotonic() when the commit under way began

    def stalled(self, limit: float) -> bool:
        """A commit has been under way longer than `limit` seconds (the cluster is not answering it)."""
        return self.busy_since is not None and time.monotonic() - self.busy_since > limit

    @property
    def unsent(self) -> int:
        return len(self._answers)

    def answered(self, tp: Partition, offset: int, record: Outgoing) -> None:
        self._answers.append(record)
        self.progress.finished(tp, offset)

    def written(self, record: Outgoing) -> None:
        """A record that commits with the next transaction, finishing no offset by itself."""
        self._answers.append(record)

    async def restore(self, tps: list[Partition], timeout: float) -> None:
        for tp, (offset, metadata) in (await self._consumer.committed(tps, timeout)).items():
            self.progress.restore(tp, offset, metadata)
            log.info("partition_restored", partition=tp[1], offset=offset, metadata_chars=len(metadata))

    def forget(self, tps: list[Partition]) -> None:
        for tp in tps:
            self.progress.forget(tp)
            self._last.pop(tp, None)

    def due(self) -> bool:
        return time.monotonic() >= self._next

    async def commit(self) -> bool:
        """Commit what changed; False if the transaction failed (it is offered again later)."""
        answers, self._answers = self._answers, []
        owned = self._consumer.owned()
        self.forget([tp for tp in self.progress.checkpoint() if tp not in owned])  # lost since it was read
        checkpoint = {tp: c for tp, c in self.progress.checkpoint().items() if self._last.get(tp) != c}
        if not answers and not checkpoint:
            self._next = time.monotonic() + self._interval
            return True
        self.busy_since = time.monotonic()
        try:
            await self._writer.commit(answers, checkpoint, self._consumer)
        except KafkaUnavailable as exc:
            self._answers[:0] = answers
            self._failures += 1
            self.ok = False
            self._next = time.monotonic() + min(0.1 * 2**self._failures, 5.0)
            log.warning("commit_failed", answers=len(answers), in_a_row=self._failures, error=str(exc))
            return False
        finally:
            self.busy_since = None
        for tp, c in checkpoint.items():
            if self.progress.owns(tp):
                self._last[tp] = c
        self._failures = 0
        self.ok = True
        self._next = time.monotonic() + self._interval
        return True
