"""A slow destination holds back only its own messages (issue 6, item 4): a tarpit that waits before every
reply neither delays another egress path nor gets the worker thrown out of its consumer group.

Real Kafka, one DeliveryWorker, two SMTP servers on loopback: the tarpit (`tests.infra.tarpit`) and the
recording sink. The tarpit's tasks come first in the same partition as the fast path's, so the fast
ones sit behind them in the log and the partition's commit point stays on the tarpit's first task.
Times are read at the servers; the assertions are on order and counts only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from mailstream.core.clock import system_clock
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventConsumer, EventProducer, ensure_topics
from mailstream.events.records import DeliveryResponse
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, DELIVERY, RESPONSES
from tests.infra.slow_paths import (
    FAST,
    MAX_POLL_INTERVAL_MS,
    SLOW,
    WatchedConsumer,
    publish,
    tasks_for,
    two_path_config,
)
from tests.infra.smtp_recorder import RecordingSink
from tests.infra.tarpit import Tarpit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPLY_DELAY = 4.0  # seconds before each tarpit reply: six replies a message, far above the fast path's time
SLOW_TASKS, FAST_TASKS = 20, 200


async def test_a_tarpit_holds_back_neither_other_paths_nor_group_membership(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailstream.delivery.worker.EventConsumer", WatchedConsumer)
    WatchedConsumer.reset()
    run = uuid.uuid4().hex[:8]
    ensure_topics(kafka_bootstrap, [BODIES, DELIVERY, RESPONSES])
    with Tarpit(REPLY_DELAY) as tarpit, RecordingSink() as fast:
        config = two_path_config(kafka_bootstrap, tarpit.hostport, fast.hostport, REPLY_DELAY)
        producer = EventProducer(kafka_bootstrap)
        responses = EventConsumer(kafka_bootstrap, f"responses-{uuid.uuid4().hex[:8]}", [RESPONSES.name])
        worker = DeliveryWorker(config, system_clock)
        running: asyncio.Task[None] | None = None
        answers: Counter[str] = Counter()
        got: dict[str, DeliveryResponse] = {}
        try:
            body = await put_body(producer, f"Subject: {run}\r\n\r\nslow or fast\r\n".encode())
            slow_tasks = tasks_for(config, SLOW, run, SLOW_TASKS, body)
            fast_tasks = tasks_for(config, FAST, run, FAST_TASKS, body)
            await publish(producer, slow_tasks, partition=0)
            await publish(producer, fast_tasks, partition=0)  # behind the tarpit's in the log
            wanted = {t.attempt_id for t in slow_tasks + fast_tasks}
            running = asyncio.create_task(worker.run())
            async with asyncio.timeout(60 + 20 * REPLY_DELAY):
                while not wanted <= got.keys():
                    if running.done():
                        running.result()  # the worker died: show why
                        pytest.fail("the worker stopped by itself")
                    for record in await responses.poll_batch(500, timeout=0.5):
                        answer = decode(record.value, DeliveryResponse)
                        if answer.attempt_id in wanted:
                            answers[answer.attempt_id] += 1
                            got[answer.attempt_id] = answer
            all_answered = time.monotonic()
            assert worker.healthy
        finally:
            worker.stop()
            if running is not None:
                await running
            await responses.close()
            await producer.close()

    # Everything delivered, each message once at its server and answered once on mail.responses.
    assert {a: r.outcome for a, r in got.items()} == {a: "DELIVERED" for a in wanted}
    assert set(answers.values()) == {1}
    fast_got = Counter(m.rcpt_tos[0] for m in fast.messages if run in m.rcpt_tos[0])
    assert fast_got == Counter(t.recipient for t in fast_tasks)
    slow_got = Counter(m.rcpt_to for m in tarpit.messages if run in m.rcpt_to)
    assert slow_got == Counter(t.recipient for t in slow_tasks)

    # The fast path did not wait for the tarpit: its last message was accepted before the tarpit's first.
    last_fast = max(m.at for m in fast.messages if run in m.rcpt_tos[0])
    first_slow = min(m.at for m in tarpit.messages)
    assert last_fast < first_slow, f"fast path finished {last_fast - first_slow:.1f}s after the tarpit's first"
    assert max(got[t.attempt_id].completed_at for t in fast_tasks) < min(
        got[t.attempt_id].completed_at for t in slow_tasks
    )

    # The tarpit held its messages longer than max.poll.interval, yet the worker stayed in its group: one
    # assignment at the start, nothing revoked or lost until it stopped.
    assert first_slow - min(tarpit.opened) > MAX_POLL_INTERVAL_MS / 1000
    changes = [(kind, tps) for at, kind, tps in WatchedConsumer.changes() if at < all_answered and tps]
    assert [kind for kind, _ in changes] == ["assign"], changes
    assert ("mail.delivery", 0) in changes[0][1]
