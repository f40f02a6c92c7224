"""The connection limits adaptive shaping put on egress paths (`limit_path` rules), as mail.shaping publishes them.

Stage 2 decides a path's shaping actions; a connection limit is the one it cannot apply itself, since connections
are the delivery worker's. So each worker tails the compacted mail.shaping from the beginning (a few records) and
narrows a path's `connection_limit` while an action is in force: the lowest of the configured limit and the
actions', by the worker's clock, so an ended action stops applying without a record saying so.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from mailstream.events.kafka import Bootstrap, KafkaUnavailable, TopicTailer
from mailstream.events.records import ShapingControl
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import SHAPING
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


class ShapedLimits:
    def __init__(self) -> None:
        self._by_path: dict[str, dict[str, ShapingControl]] = {}  # path -> control id -> control

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        try:
            control = decode(value, ShapingControl)
        except SerdeError as exc:  # a poison record must not stop the worker
            log.error("shaping_record_unreadable", key=key.decode(errors="replace"), error=str(exc))
            return
        if control.path is None:
            return
        on_path = self._by_path.setdefault(control.path, {})
        if control.connection_limit is None:
            on_path.pop(control.id, None)  # the rule no longer limits connections
        else:
            on_path[control.id] = control

    def limit(self, path: str, now: datetime) -> int | None:
        """The lowest connection limit an action in force sets on the path; None: none does."""
        on_path = self._by_path.get(path)
        if not on_path:
            return None
        limits = [c.connection_limit for c in on_path.values() if c.connection_limit is not None and c.in_force(now)]
        return min(limits, default=None)

    async def run(self, bootstrap: Bootstrap) -> None:
        """Tail mail.shaping forever (cancel to stop); a cluster away is retried, the limits kept meanwhile."""
        tailer = TopicTailer(bootstrap, SHAPING.name, SHAPING.partitions, {})
        try:
            while True:
                try:
                    batch = await tailer.poll_batch(timeout=0.5)
                except KafkaUnavailable as exc:
                    log.warning("shaping_tail_failed", error=str(exc))
                    await asyncio.sleep(1.0)
                    continue
                for msg in batch:
                    self.apply(msg.key(), msg.value())
        finally:
            await tailer.close()
