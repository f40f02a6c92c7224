"""Each gateway process follows mail.responses from its end to learn the first attempt of the transactions
its sessions are waiting on (cut-through): the delivery worker's own answer, one hop before stage 1 turns it
into a status. A message stage 1 holds or refuses on arrival sends no response: that counts as a timeout."""

from __future__ import annotations

import asyncio
import contextlib

from mailstream.events.kafka import Bootstrap, TopicTailer
from mailstream.events.records import DeliveryResponse, EgressVerdict
from mailstream.events.serde import SerdeError
from mailstream.events.topics import RESPONSES
from mailstream.gateway.cut_through import FirstAttempt
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
LATEST = -1  # librdkafka's OFFSET_END: what was written before this process started is not awaited


def first_attempt(answer: DeliveryResponse | EgressVerdict) -> FirstAttempt | None:
    """What the DATA reply can report of this answer: only a first attempt's."""
    if answer.attempt != 1:
        return None
    if isinstance(answer, EgressVerdict):  # ended unsent by stage 2: expired or cancelled while held
        return FirstAttempt(550, "5.0.0", answer.reason)
    return FirstAttempt(answer.response.code, answer.response.enhanced_code, answer.response.content)


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

    def apply(self, value: bytes) -> None:
        if not self._waiting:  # nothing awaited: nothing to decode (responses are keyed by route, not by id)
            return
        try:
            answer = RESPONSES.decode(value)
        except SerdeError as exc:
            log.warning("undecodable_response", error=str(exc))
            return
        future = self._waiting.get(answer.id.encode())
        if future is None or future.done():
            return
        found = first_attempt(answer)
        if found is not None:
            future.set_result(found)

    async def run(self, bootstrap: Bootstrap) -> None:
        tailer = TopicTailer(
            bootstrap,
            RESPONSES.name,
            RESPONSES.partitions,
            dict.fromkeys(range(RESPONSES.partitions), LATEST),
            **{"fetch.wait.max.ms": 50, "fetch.min.bytes": 1},
        )  # idle polls cost: 50 ms, not 10
        try:
            while True:
                batch = await tailer.poll_batch(timeout=0.1)
                self.caught_up.set()
                for msg in batch:
                    value = msg.value()
                    if value is not None:
                        self.apply(value)
        finally:
            with contextlib.suppress(Exception):
                await tailer.close()
