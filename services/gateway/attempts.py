"""Each gateway process follows mail.status from its end to learn the first attempt of the transactions
its sessions are waiting on (cut-through). Only records whose key is awaited are decoded."""

from __future__ import annotations

import asyncio
import contextlib

from mailstream.events.kafka import TopicTailer
from mailstream.events.records import TransactionStatus
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import STATUS
from mailstream.gateway.cut_through import FirstAttempt
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
LATEST = -1  # librdkafka's OFFSET_END: what was written before this process started is not awaited


def first_attempt(status: TransactionStatus) -> FirstAttempt | None:
    """The outcome the DATA reply can report, or None while there is none yet."""
    if status.attempts:
        response = status.attempts[0].response
        return FirstAttempt(response.code, response.enhanced_code, response.content)
    if status.is_final:  # ended before any attempt: expired, cancelled, suppressed
        return FirstAttempt(550, "5.0.0", status.final_reason or status.status)
    return None


class AttemptWatch:
    def __init__(self) -> None:
        self._waiting: dict[bytes, asyncio.Future[FirstAttempt]] = {}
        self.caught_up = asyncio.Event()

    async def wait(self, ids: list[str], timeout: float) -> list[FirstAttempt | None]:
        """Each transaction's first attempt, or None for those with none within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        futures = [self._waiting.setdefault(i.encode(), loop.create_future()) for i in ids]
        try:
            await asyncio.wait(futures, timeout=timeout)
        finally:
            for i in ids:
                self._waiting.pop(i.encode(), None)
        return [f.result() if f.done() and not f.cancelled() else None for f in futures]

    def apply(self, key: bytes, value: bytes) -> None:
        future = self._waiting.get(key)
        if future is None or future.done():
            return
        try:
            status = decode(value, TransactionStatus)
        except SerdeError as exc:
            log.warning("undecodable_status", error=str(exc))
            return
        found = first_attempt(status)
        if found is not None:
            future.set_result(found)

    async def run(self, bootstrap: str) -> None:
        tailer = TopicTailer(
            bootstrap,
            STATUS.name,
            STATUS.partitions,
            dict.fromkeys(range(STATUS.partitions), LATEST),
            **{"fetch.wait.max.ms": 50, "fetch.min.bytes": 1},
        )  # idle polls cost: 50 ms, not 10
        try:
            while True:
                batch = await tailer.poll_batch(timeout=0.1)
                self.caught_up.set()
                for msg in batch:
                    key, value = msg.key(), msg.value()
                    if key is not None and value is not None:
                        self.apply(key, value)
        finally:
            with contextlib.suppress(Exception):
                await tailer.close()
