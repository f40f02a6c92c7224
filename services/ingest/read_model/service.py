"""The read model as ingest runs it: the store, the projection thread and the gauges' refresh."""

from __future__ import annotations

import asyncio

from mailstream.config.model import Config
from mailstream.core.clock import Clock
from mailstream.events.kafka import Bootstrap
from mailstream.ingest.read_model.metrics import domain_scores, oldest_queued_age, status_counts
from mailstream.ingest.read_model.projection import Projection, Projector
from mailstream.ingest.read_model.query import QueueFilter
from mailstream.ingest.read_model.rows import QueueResolver
from mailstream.ingest.read_model.store import MessageStore
from mailstream.observability import queue_gauges
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
GAUGE_INTERVAL = 30.0  # seconds between the gauges' refreshes (each reads an index or two and a day's rows)


class ReadModel:
    def __init__(self, config: Config, clock: Clock, bootstrap: Bootstrap) -> None:
        self.config, self.clock = config, clock
        self.store = MessageStore(config.ingest.read_model_db)
        self.projection = Projection(
            Projector(self.store, QueueResolver(config.queues)),
            bootstrap,
            clock=clock,
            retention=config.ingest.read_model_retention,
        )

    def refresh_gauges(self) -> None:
        """Only what the gauges show: cheaper than the whole QueueMetrics (two index scans and a day's rows)."""
        now, everything = self.clock(), QueueFilter()
        scores = domain_scores(self.store, everything, now, self.config.ingest.read_model_top_domains)
        queue_gauges.publish(
            status_counts(self.store, everything),
            oldest_queued_age(self.store, everything, now),
            {d: s["score"] for d, s in scores.items()},
        )

    async def run_gauges(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh_gauges)
            except Exception as exc:
                log.error("read_model_gauges_failed", error=str(exc))
            await asyncio.sleep(GAUGE_INTERVAL)

    def start(self) -> None:
        self.projection.start()

    def close(self) -> None:
        self.projection.stop()
        self.store.close()
