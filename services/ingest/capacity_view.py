"""The capacity read model: the latest records the scheduler stages publish on mail.queue-stats and
mail.source-usage, held in memory.

Both topics are compacted and hold one small record per (partition, tenant) or per source, so each
replica reads them from the beginning at start-up rather than keeping offsets.
"""

from __future__ import annotations

import asyncio

from mailstream.events.kafka import TopicTailer
from mailstream.events.records import QueueStats, SourceUsage
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import QUEUE_STATS, SOURCE_USAGE
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


class CapacityView:
    def __init__(self) -> None:
        self.stats: dict[str, QueueStats] = {}  # by "<partition>/<tenant>"
        self.usage: dict[str, SourceUsage] = {}  # by source name
        self.caught_up = asyncio.Event()

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode()
        try:
            if topic == QUEUE_STATS.name:
                if value is None:
                    self.stats.pop(name, None)
                else:
                    self.stats[name] = decode(value, QueueStats)
            elif topic == SOURCE_USAGE.name:
                if value is None:
                    self.usage.pop(name, None)
                else:
                    self.usage[name] = decode(value, SourceUsage)
        except SerdeError as exc:  # a poison record must not stop the view
            log.error("capacity_record_unreadable", topic=topic, key=name, error=str(exc))

    async def run(self, bootstrap: str) -> None:
        """Tail both topics from the beginning, forever."""
        tailers = [TopicTailer(bootstrap, spec.name, spec.partitions, {}) for spec in (QUEUE_STATS, SOURCE_USAGE)]
        try:
            while True:
                idle = True
                for tailer in tailers:
                    for msg in await tailer.poll_batch(timeout=0.1):
                        idle = False
                        self.apply(msg.topic() or "", msg.key(), msg.value())
                if idle:
                    self.caught_up.set()
        finally:
            for tailer in tailers:
                await tailer.close()
