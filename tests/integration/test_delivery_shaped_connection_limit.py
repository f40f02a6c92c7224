"""A `limit_path` shaping action's connection limit, as the delivery worker applies it: read from mail.shaping on a
real broker, it narrows the path's connections against a real SMTP sink while in force, and no longer after."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from mailstream.config.model import parse_config
from mailstream.core.clock import ManualClock
from mailstream.delivery.dispatch import PathDispatcher
from mailstream.delivery.routes import route_for
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.kafka import EventProducer, ensure_topics
from mailstream.events.records import ShapingControl
from mailstream.events.topics import SHAPING
from tests.infra.smtp_recorder import RecordingSink

pytestmark = pytest.mark.integration
BODY = b"Subject: shaped\r\n\r\nhello\r\n"


def worker_for(sink: RecordingSink, bootstrap: str, clock: ManualClock) -> DeliveryWorker:
    config = parse_config(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "ingest": {"message_id_domain": "worker.test"},
            "delivery": {
                "smarthost": sink.hostport,
                "outbound": {"allow": [sink.hostport]},
                "ehlo_domain": "worker.test",
                "connect_timeout": "5s",
                "command_timeout": "10s",
            },
            "egress": {"sources": [{"name": "s1"}], "pools": [{"name": "p", "entries": [{"name": "s1"}]}]},
            "queues": {"egress_pool": "p"},
        },
        env={},
    )
    return DeliveryWorker(config, clock)


def path_of(worker: DeliveryWorker) -> PathDispatcher:
    source = worker._sources["s1"]
    return worker.dispatcher(source, route_for(source, worker._config.delivery, "example.com"))


async def send(path: PathDispatcher, count: int) -> list[int]:
    attempts = await asyncio.gather(
        *(path.deliver("from@worker.test", f"r{i}@example.com", BODY, 30.0) for i in range(count))
    )
    return [a.response.code if a is not None else 0 for a in attempts]


async def test_a_shaping_connection_limit_narrows_the_path_while_in_force(kafka_bootstrap: str) -> None:
    now = datetime.now(UTC)
    clock = ManualClock(now)
    with RecordingSink(delay=0.05) as sink:
        worker = worker_for(sink, kafka_bootstrap, clock)
        path_key = f"s1->{sink.hostport}"
        ensure_topics(kafka_bootstrap, [SHAPING])
        producer = EventProducer(kafka_bootstrap)
        control = ShapingControl(
            id=f"throttle|{path_key}",
            rule="throttle",
            action="limit_path",
            path=path_key,
            connection_limit=1,
            reason="421 4.7.0 try later",
            since=now,
            until=now + timedelta(minutes=10),
        )
        try:
            await producer.send(SHAPING, control.id, control)
        finally:
            await producer.close()
        tail = asyncio.create_task(worker.shaped.run(kafka_bootstrap))
        try:
            deadline = time.monotonic() + 30
            while worker.shaped.limit(path_key, clock()) is None:
                assert time.monotonic() < deadline, "the worker did not read mail.shaping"
                await asyncio.sleep(0.1)
            narrowed = path_of(worker)
            assert narrowed.shape.limit == 1
            assert await send(narrowed, 8) == [250] * 8
            assert sink.max_concurrent() == 1
            opened = len(sink.connections)

            clock.advance(timedelta(minutes=10))  # the action ends: the configured (no) limit again
            restored = path_of(worker)
            assert restored.shape.limit is None
            assert await send(restored, 8) == [250] * 8
            await restored.close()
            assert len(sink.connections) - opened > 1  # several at once again
        finally:
            tail.cancel()
            await asyncio.gather(tail, return_exceptions=True)
