"""An attempt has an overall deadline (`delivery.attempt_timeout`): a server that takes five minutes over the
end of the data (well within `command_timeout`) gets the attempt ended TRANSIENT when the deadline passes,
with a reply that says so, and the connection dropped; the worker keeps its assignment meanwhile, and the
fast path's messages, queued in the same partition behind the stuck one, are delivered and answered.

Real Kafka, one DeliveryWorker, the tarpit (slow at the end of the data only) and the recording sink.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from mailstream.core.clock import system_clock
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventConsumer, EventProducer, ensure_topics
from mailstream.events.records import DeliveryResponse
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, DELIVERY, RESPONSES
from tests.infra.slow_paths import FAST, SLOW, WatchedConsumer, publish, tasks_for, two_path_config
from tests.infra.smtp_recorder import RecordingSink
from tests.infra.tarpit import Tarpit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TARPIT_DELAY = 300.0  # seconds before the reply to the end of the data
DEADLINE = 4.0  # delivery.attempt_timeout


async def test_a_stuck_attempt_ends_transient_at_its_deadline(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailstream.delivery.worker.EventConsumer", WatchedConsumer)
    WatchedConsumer.reset()
    run = uuid.uuid4().hex[:8]
    ensure_topics(kafka_bootstrap, [BODIES, DELIVERY, RESPONSES])
    with Tarpit(TARPIT_DELAY, slow={"end"}) as tarpit, RecordingSink() as fast:
        config = two_path_config(
            kafka_bootstrap, tarpit.hostport, fast.hostport, TARPIT_DELAY, attempt_timeout=f"{DEADLINE:g}s"
        )
        producer = EventProducer(kafka_bootstrap)
        responses = EventConsumer(kafka_bootstrap, f"responses-{uuid.uuid4().hex[:8]}", [RESPONSES.name])
        worker = DeliveryWorker(config, system_clock)
        running: asyncio.Task[None] | None = None
        got: dict[str, DeliveryResponse] = {}
        try:
            body = await put_body(producer, f"Subject: {run}\r\n\r\nstuck\r\n".encode())
            slow_tasks = tasks_for(config, SLOW, run, 2, body)
            fast_tasks = tasks_for(config, FAST, run, 50, body)
            await publish(producer, slow_tasks, partition=0)
            await publish(producer, fast_tasks, partition=0)
            wanted = {t.attempt_id for t in slow_tasks + fast_tasks}
            started = time.monotonic()
            running = asyncio.create_task(worker.run())
            async with asyncio.timeout(60 + 4 * DEADLINE):
                while not wanted <= got.keys():
                    if running.done():
                        running.result()
                        pytest.fail("the worker stopped by itself")
                    for record in await responses.poll_batch(500, timeout=0.5):
                        answer = decode(record.value, DeliveryResponse)
                        if answer.attempt_id in wanted:
                            got[answer.attempt_id] = answer
            answered = time.monotonic()
            assert worker.healthy
        finally:
            worker.stop()
            if running is not None:
                await running
            await responses.close()
            await producer.close()

    for task in slow_tasks:
        answer = got[task.attempt_id]
        assert answer.outcome == "TRANSIENT", answer
        assert (answer.response.code, answer.response.enhanced_code) == (451, "4.4.2"), answer.response
        assert answer.response.command == "DATA", answer.response
        assert "deadline" in answer.response.content, answer.response
        assert (answer.completed_at - answer.started_at).total_seconds() < DEADLINE + 1.5, answer
    assert {got[t.attempt_id].outcome for t in fast_tasks} == {"DELIVERED"}
    # Both stuck attempts ended well before the tarpit would have answered one.
    assert answered - started < TARPIT_DELAY / 4
    assert len(tarpit.messages) <= 2  # the data reached it; its 250 never came within the deadline
    changes = [kind for at, kind, tps in WatchedConsumer.changes() if at < answered and tps]
    assert changes == ["assign"], changes
