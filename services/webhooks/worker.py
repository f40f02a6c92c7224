"""One endpoint's share of mail.events: its consumer group's partitions, each worked by a lane of its own
(`webhooks.lane`: in order per transaction, and only a finished prefix marked done, so a restart resumes after
it). Lanes of one endpoint run side by side; a lane with a backlog pauses its partition's fetching, so a stuck
partition neither grows memory nor stops the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from prometheus_client import Gauge

from mailstream.events.kafka import Consumed
from mailstream.webhooks.lane import Lane

LAG = Gauge(
    "mailstream_webhook_lag_records",
    "Records of mail.events not yet finished for the endpoint, over this process's partitions of it",
    ["endpoint"],
)
PAUSE_AT = 1000  # records waiting in a lane before its partition stops fetching
RESUME_AT = 100


class GroupMember(Protocol):
    """What a worker needs of its consumer: `events.lane_consumer.LaneConsumer`, or a test's twin."""

    async def poll_batch(self) -> list[Consumed]: ...
    def revoked(self) -> list[int]: ...
    def done(self, record: Consumed) -> bool: ...
    def pause(self, partition: int, paused: bool) -> None: ...
    def high_watermark(self, partition: int) -> int | None: ...
    async def close(self) -> None: ...


class EndpointWorker:
    def __init__(self, endpoint_id: str, consumer: GroupMember, handle: Callable[[Consumed], Awaitable[None]]) -> None:
        self.endpoint_id = endpoint_id
        self._consumer, self._handle = consumer, handle
        self._lanes: dict[int, Lane] = {}
        self._paused: set[int] = set()

    async def run(self) -> None:
        try:
            while True:
                batch = await self._consumer.poll_batch()
                for partition in self._consumer.revoked():
                    lane = self._lanes.pop(partition, None)
                    self._paused.discard(partition)
                    if lane is not None:
                        await lane.stop()
                for partition, lane in self._lanes.items():
                    if lane.failed is not None:  # a bug, not a failed POST: its record stays uncommitted
                        raise lane.failed
                    if lane.abandoned:  # offsets refused, yet not revoked (revocation is told first): start over
                        raise RuntimeError(f"partition {partition} of {self.endpoint_id} refused its offsets")
                for record in batch:
                    lane = self._lanes.get(record.partition)
                    if lane is None:
                        lane = self._lanes[record.partition] = Lane(record.partition, self._handle, self._consumer.done)
                    lane.put(record)
                self._shape()
        finally:
            for lane in self._lanes.values():
                await lane.stop()
            await self._consumer.close()
            with contextlib.suppress(KeyError):  # never set: nothing to remove
                LAG.remove(self.endpoint_id)

    def _shape(self) -> None:
        lag = 0
        for partition, lane in self._lanes.items():
            if lane.backlog >= PAUSE_AT and partition not in self._paused:
                self._paused.add(partition)
                self._consumer.pause(partition, True)
            elif lane.backlog <= RESUME_AT and partition in self._paused:
                self._paused.discard(partition)
                self._consumer.pause(partition, False)
            high = self._consumer.high_watermark(partition)
            if high is not None and lane.next_offset is not None:
                lag += max(0, high - lane.next_offset)
            else:
                lag += lane.backlog
        LAG.labels(self.endpoint_id).set(lag)
