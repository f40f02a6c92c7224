"""What scheduler stage 1 did with each queue operation, as its partitions report it on mail.queue-results, held in
memory for the routes that wait to answer (and GET one later) with the seed model's QueueOperationResult.

Each partition the operation went to answers once, when it has applied it to every candidate it held; the result is
their sum. The topic keeps a day; each replica reads it from the beginning and keeps the latest operations only.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime
from typing import Any

from mailstream.events.kafka import Bootstrap, TopicTailer
from mailstream.events.records import QueueOperationOutcome
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import QUEUE_RESULTS
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
KEPT = 10_000  # operations remembered per replica (a day of them is far fewer in practice)


def result(
    operation: str,
    op_id: str,
    outcomes: list[QueueOperationOutcome],
    expected: int,
    timestamp: datetime,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    """QueueOperationResult (email-queue-model.md §2.3) of the partitions' outcomes so far, with `errors` found
    before the operation was sent (named messages not visible, already final); `done` once every one answered."""
    found = list(errors or []) + [e for o in outcomes for e in o.errors]
    done = len({o.partition for o in outcomes}) >= expected
    return {
        "id": op_id,
        "success": done and not found,
        "operation": operation,
        "affected_messages": sum(o.affected for o in outcomes),
        "affected_queues": sorted({q for o in outcomes for q in o.affected_queues}),
        "errors": found,
        "timestamp": timestamp.isoformat(),
        "done": done,
        "partitions_answered": len({o.partition for o in outcomes}),
        "partitions_expected": expected,
    }


class OperationView:
    def __init__(self, kept: int = KEPT) -> None:
        self.outcomes: OrderedDict[str, dict[int, QueueOperationOutcome]] = OrderedDict()
        self.kept = kept
        self._waiters: dict[str, list[asyncio.Event]] = {}

    def apply(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            outcome = decode(value, QueueOperationOutcome)
        except SerdeError as exc:  # a poison record must not stop the view
            log.error("operation_outcome_unreadable", error=str(exc))
            return
        self.outcomes.setdefault(outcome.id, {})[outcome.partition] = outcome
        self.outcomes.move_to_end(outcome.id)
        while len(self.outcomes) > self.kept:
            self.outcomes.popitem(last=False)
        for event in self._waiters.get(outcome.id, []):
            event.set()

    def of(self, op_id: str) -> list[QueueOperationOutcome]:
        return sorted(self.outcomes.get(op_id, {}).values(), key=lambda o: o.partition)

    async def wait(self, op_id: str, expected: int, timeout: float) -> list[QueueOperationOutcome]:
        """The outcomes once `expected` partitions answered, or those in at `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        event = asyncio.Event()
        self._waiters.setdefault(op_id, []).append(event)
        try:
            while len(self.outcomes.get(op_id, {})) < expected and (left := deadline - loop.time()) > 0:
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), left)
                except TimeoutError:
                    break
        finally:
            waiters = self._waiters[op_id]
            waiters.remove(event)
            if not waiters:
                del self._waiters[op_id]
        return self.of(op_id)

    async def run(self, bootstrap: Bootstrap) -> None:
        tailer = TopicTailer(bootstrap, QUEUE_RESULTS.name, QUEUE_RESULTS.partitions, {})
        try:
            while True:
                for msg in await tailer.poll_batch(timeout=0.1):
                    self.apply(msg.value())
        finally:
            await tailer.close()
