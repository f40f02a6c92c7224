"""The capacity read model: the latest records the scheduler stages publish on mail.queue-stats,
mail.source-usage and mail.shaping, held in memory.

Both topics are compacted and hold one small record per (partition, tenant) or per source, so each
replica reads them from the beginning at start-up rather than keeping offsets.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from mailstream.core.queue_scope import QueueScope
from mailstream.core.queue_state import verdict
from mailstream.events.kafka import Bootstrap, TopicTailer
from mailstream.events.records import QueueStats, QueueSuspension, ShapingControl, SourceUsage
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import QUEUE_STATS, SHAPING, SOURCE_USAGE
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


class CapacityView:
    def __init__(self) -> None:
        self.stats: dict[str, QueueStats] = {}  # by "<partition>/<tenant>"
        self.usage: dict[str, SourceUsage] = {}  # by source name
        self.shaping: dict[str, ShapingControl] = {}  # by id; in force while `until` is ahead
        self.caught_up = asyncio.Event()
        self._refusing: list[tuple[QueueScope, QueueSuspension]] | None = None  # draining/disabled, when known

    def refusal(self, queue: str, tenant: str | None, campaign: str | None, domain: str, now: datetime) -> str | None:
        """Why a new message for this queue would be refused, as the published controls show it. Only an
        early answer: stage 1, which holds the controls, refuses whatever arrives anyway."""
        if self._refusing is None:
            self._refusing = [
                (QueueScope(queue=s.queue, tenant=s.tenant, campaign=s.campaign, domain=s.domain), s)
                for stats in self.stats.values()
                for s in stats.suspensions
                if s.state != "bounce"
            ]
        if not self._refusing:
            return None
        found = verdict(
            (s.state, s.reason)
            for scope, s in self._refusing
            if (s.until is None or s.until > now) and scope.matches(queue, tenant, campaign, domain)
        )
        if found.refusal is None:
            return None
        state, reason = found.refusal
        return f"queue {queue} is {state}" + (f": {reason}" if reason else "")

    def shaping_in_force(self, now: datetime) -> list[ShapingControl]:
        """The adaptive-shaping actions in force at `now` (by the reader's clock: an ended one needs no removal)."""
        return sorted((c for c in self.shaping.values() if c.in_force(now)), key=lambda c: c.since)

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode()
        try:
            if topic == QUEUE_STATS.name:
                self._refusing = None
                if value is None:
                    self.stats.pop(name, None)
                else:
                    self.stats[name] = decode(value, QueueStats)
            elif topic == SOURCE_USAGE.name:
                if value is None:
                    self.usage.pop(name, None)
                else:
                    self.usage[name] = decode(value, SourceUsage)
            elif topic == SHAPING.name:
                if value is None:
                    self.shaping.pop(name, None)
                else:
                    self.shaping[name] = decode(value, ShapingControl)
        except SerdeError as exc:  # a poison record must not stop the view
            log.error("capacity_record_unreadable", topic=topic, key=name, error=str(exc))

    async def run(self, bootstrap: Bootstrap) -> None:
        """Tail the topics from the beginning, forever."""
        specs = (QUEUE_STATS, SOURCE_USAGE, SHAPING)
        tailers = [TopicTailer(bootstrap, spec.name, spec.partitions, {}) for spec in specs]
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
