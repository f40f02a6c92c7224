"""The delivery worker rides out a broker outage: it stays up, answers /healthz 503 "degraded" while the
cluster is gone, and once the broker is back it answers what it had in hand and delivers what waited, each
message once; SIGTERM with the broker down stops it within 10 s.

A broker of the test's own (tests.infra.broker.LocalBroker), stopped and started again on the same ports
and data; the worker as a real process (`python -m mailstream.delivery`); the recording sink.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from mailstream.config.model import parse_config
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventConsumer, EventProducer, ensure_topics
from mailstream.events.records import DeliveryResponse, DeliveryTask
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, DELIVERY, RESPONSES
from tests.infra.broker import LocalBroker, unavailable_reason
from tests.infra.slow_paths import FAST, publish, tasks_for, two_path_settings
from tests.infra.smtp_recorder import RecordingSink
from tests.infra.stack import Stack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE = 15.0  # seconds the broker stays down: longer than the worker's session timeout (10 s)


def _health(port: int) -> tuple[int, str]:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0)
    except httpx.HTTPError:
        return 0, "unreachable"
    return r.status_code, str(r.json().get("status"))


async def _answered(responses: EventConsumer, tasks: Sequence[DeliveryTask], seen: set[str], timeout: float) -> None:
    wanted = {t.attempt_id for t in tasks}
    async with asyncio.timeout(timeout):
        while not wanted <= seen:
            for record in await responses.poll_batch(1000, timeout=0.5):
                answer = decode(record.value, DeliveryResponse)
                seen.add(answer.attempt_id)


async def test_the_worker_rides_out_a_broker_outage_and_stops_on_sigterm_without_one(tmp_path: Path) -> None:
    if (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    run = uuid.uuid4().hex[:8]
    with LocalBroker(tmp_path / "kafka") as broker, RecordingSink() as sink:
        ensure_topics(broker.bootstrap, [BODIES, DELIVERY, RESPONSES])
        port = free_port()
        settings = two_path_settings(broker.bootstrap, sink.hostport, sink.hostport, 1.0, metrics_port=port)
        config = parse_config(settings, env={})
        stack = Stack(settings, tmp_path)
        producer = EventProducer(broker.bootstrap)
        responses = EventConsumer(broker.bootstrap, f"responses-{run}", [RESPONSES.name])
        seen: set[str] = set()
        try:
            body = await put_body(producer, f"Subject: {run}\r\n\r\noutage\r\n".encode())
            tasks = tasks_for(config, FAST, run, 300, body)
            before, during, after = tasks[:50], tasks[50:200], tasks[200:]
            stack.start_service("delivery")
            await publish(producer, before)
            await _answered(responses, before, seen, 60)

            await publish(producer, during)  # in the worker's hands, or still in the log, as the broker goes
            broker.stop()
            down_at = time.monotonic()
            states: set[tuple[int, str]] = set()
            while time.monotonic() < down_at + OUTAGE:
                assert stack.procs["delivery"].poll() is None, stack.log_tail("delivery")
                states.add(_health(port))
                await asyncio.sleep(0.5)
            assert (503, "degraded") in states, states
            broker.start()

            await _answered(responses, during, seen, 120)
            await publish(producer, after)
            await _answered(responses, after, seen, 60)
            deadline = time.monotonic() + 30
            while _health(port) != (200, "ok"):
                assert time.monotonic() < deadline, stack.log_tail("delivery")
                await asyncio.sleep(0.2)

            broker.stop()
            await asyncio.sleep(2)  # the worker notices the broker is gone
            proc = stack.procs["delivery"]
            stopping = time.monotonic()
            proc.terminate()
            code = proc.wait(20)
            took = time.monotonic() - stopping
        finally:
            stack.stop()
            await responses.close()
            await producer.close()

    assert took < 10.0, f"SIGTERM with the broker down took {took:.1f}s\n{stack.log_tail('delivery')}"
    assert code == 0, stack.log_tail("delivery")
    sent = Counter(m.rcpt_tos[0] for m in sink.messages if run in m.rcpt_tos[0])
    assert sent == Counter(t.recipient for t in tasks), "each message delivered exactly once"
