"""Two egress paths for one delivery worker, a tarpit's and a fast sink's: the configuration, the tasks,
and a consumer that records the worker's group membership. Shared by
tests/integration/test_delivery_slow_destination.py and bench/slow_destination.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from mailstream.config.egress_paths import site_of
from mailstream.config.model import Config, parse_config
from mailstream.core.egress_path import EgressPath
from mailstream.events.kafka import EventConsumer, EventProducer
from mailstream.events.records import BodyRef, DeliveryTask
from mailstream.events.topics import DELIVERY

SLOW, FAST = "src-tarpit", "src-fast"
# Below the tarpit's time per message (six replies): a worker that stopped polling while it waits for the
# tarpit would be thrown out of its group. librdkafka wants it at least session.timeout.ms (10 s).
MAX_POLL_INTERVAL_MS = 10_000


def two_path_settings(bootstrap: str, tarpit: str, fast: str, reply_delay: float, **delivery: Any) -> dict[str, Any]:
    """Source `src-tarpit` relays to `tarpit`, source `src-fast` to `fast` (both `host:port`); `delivery`
    overrides keys of the delivery section. The configuration file's content, as a dict."""

    def relay(hostport: str) -> dict[str, Any]:
        host, _, port = hostport.rpartition(":")
        return {"host": host, "port": int(port), "starttls": "disabled"}

    sources = [{"name": SLOW, "relay": relay(tarpit)}, {"name": FAST, "relay": relay(fast)}]
    slack = f"{int(3 * reply_delay) + 10}s"  # the greeting comes within connect_timeout
    return {
        "kafka": {"bootstrap_servers": bootstrap},
        "ingest": {"message_id_domain": "worker.test"},
        "delivery": {
            "group_id": f"delivery-{uuid.uuid4().hex[:8]}",
            "ehlo_domain": "worker.test",
            "connect_timeout": slack,
            "command_timeout": slack,
            "path_wait": f"{int(10 * reply_delay) + 60}s",
            "outbound": {"allow": ["127.0.0.0/8"]},  # the relays are on loopback, which the default denies
            **delivery,
        },
        "egress": {"sources": sources, "pools": [{"name": "all", "entries": [{"name": SLOW}, {"name": FAST}]}]},
        "queues": {"egress_pool": "all"},
    }


def two_path_config(bootstrap: str, tarpit: str, fast: str, reply_delay: float, **delivery: Any) -> Config:
    """`two_path_settings`, parsed."""
    return parse_config(two_path_settings(bootstrap, tarpit, fast, reply_delay, **delivery), env={})


def tasks_for(config: Config, source: str, run: str, count: int, body: BodyRef) -> list[DeliveryTask]:
    site = site_of(config.egress.source(source), config.delivery.smarthost, "example.com")
    now = datetime.now(UTC)
    tasks = []
    for i in range(count):
        tx = f"{run}-{source}-{i}"
        tasks.append(
            DeliveryTask(
                id=tx,
                attempt=1,
                attempt_id=f"{tx}/1",
                queue="example.com",
                egress_pool="all",
                egress_source=source,
                egress_path=EgressPath(source, site).key(),
                sender=f"bounce@{source}.test",
                recipient=f"{source}-{i}-{run}@example.com",
                domain="example.com",
                body=body,
                created_at=now,
                issued_at=now,
            )
        )
    return tasks


async def publish(producer: EventProducer, tasks: Sequence[DeliveryTask], partition: int | None = None) -> None:
    """All at once (one produce request carries many); `partition` puts every task in the same partition."""
    await asyncio.gather(*(producer.send(DELIVERY, t.egress_path, t, partition=partition) for t in tasks))


class WatchedConsumer(EventConsumer):
    """The worker's consumer, with a short max.poll.interval, recording every assignment change."""

    events: list[tuple[float, str, tuple[tuple[str, int], ...]]] = []  # (monotonic, assign|revoke|lost, partitions)
    _events_lock = threading.Lock()

    def __init__(self, bootstrap: str, group_id: str, topics: Sequence[str], **extra: Any) -> None:
        super().__init__(bootstrap, group_id, topics, **{"max.poll.interval.ms": MAX_POLL_INTERVAL_MS, **extra})
        self._consumer.subscribe(
            list(topics),
            on_assign=self._record("assign", self._on_assign),
            on_revoke=self._record("revoke", self._on_revoke),
            on_lost=self._record("lost", self._on_revoke),
        )

    @classmethod
    def _record(cls, kind: str, then: Any = None) -> Any:
        def callback(consumer: Consumer, tps: list[TopicPartition]) -> None:
            with cls._events_lock:
                cls.events.append((time.monotonic(), kind, tuple(sorted((tp.topic, tp.partition) for tp in tps))))
            if then is not None:
                then(consumer, tps)

        return callback

    @classmethod
    def reset(cls) -> None:
        with cls._events_lock:
            cls.events = []

    @classmethod
    def changes(cls) -> list[tuple[float, str, tuple[tuple[str, int], ...]]]:
        with cls._events_lock:
            return list(cls.events)
