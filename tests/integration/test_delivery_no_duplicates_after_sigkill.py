"""A delivery worker killed with SIGKILL and restarted sends again nothing whose response it had written.

The worker runs as a real process (`python -m mailstream.delivery`). Partition 0 starts with a task that a
tarpit holds (its reply to the data comes after minutes), so that partition's first unfinished offset
stays on it while hundreds of tasks behind it, and in partition 1, are delivered to the recording sink and
answered. The worker is killed mid-run and restarted. Counted at the sink by attempt (each task has its
own recipient): an attempt sent twice must be one whose response was not committed before the kill (the
attempts in flight then); every other was sent once. Responses are read as committed (read_committed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailstream.config.model import parse_config
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventConsumer, EventProducer, ensure_topics
from mailstream.events.records import DeliveryResponse
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, DELIVERY, RESPONSES
from tests.infra.slow_paths import FAST, SLOW, publish, tasks_for, two_path_settings
from tests.infra.smtp_recorder import RecordingSink
from tests.infra.stack import Stack, free_port
from tests.infra.tarpit import Tarpit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PER_PARTITION = 300


async def test_a_restarted_worker_resends_nothing_already_answered(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    ensure_topics(kafka_bootstrap, [BODIES, DELIVERY, RESPONSES])
    with Tarpit(600.0, slow={"end"}) as tarpit, RecordingSink() as sink:
        settings = two_path_settings(
            kafka_bootstrap,
            tarpit.hostport,
            sink.hostport,
            1.0,
            metrics_port=free_port(),
            path_wait="10m",
            attempt_timeout="15m",
        )
        config = parse_config(settings, env={})
        stack = Stack(settings, tmp_path)
        producer = EventProducer(kafka_bootstrap)
        responses = EventConsumer(kafka_bootstrap, f"responses-{run}", [RESPONSES.name])
        answers: list[DeliveryResponse] = []
        try:
            body = await put_body(producer, f"Subject: {run}\r\n\r\nonce\r\n".encode())
            stuck = tasks_for(config, SLOW, run, 1, body)
            fast = tasks_for(config, FAST, run, 2 * PER_PARTITION, body)
            by_recipient = {t.recipient: t.attempt_id for t in fast}
            stack.start_service("delivery")
            await publish(producer, stuck, partition=0)
            await publish(producer, fast[:PER_PARTITION], partition=0)
            await publish(producer, fast[PER_PARTITION:], partition=1)

            def delivered() -> Counter[str]:
                return Counter(m.rcpt_tos[0] for m in sink.messages if m.rcpt_tos[0] in by_recipient)

            deadline = time.monotonic() + 120
            behind_stuck = {t.attempt_id for t in fast[:PER_PARTITION]}
            # Mid-run: about half delivered, and some answer behind partition 0's stuck task committed (read back,
            # so the kill cannot come before the worker's first commit of that partition).
            while len(delivered()) < PER_PARTITION or not behind_stuck & {a.attempt_id for a in answers}:
                assert time.monotonic() < deadline, stack.log_tail("delivery")
                for record in await responses.poll_batch(1000, timeout=0.05):
                    answer = decode(record.value, DeliveryResponse)
                    if answer.attempt_id in by_recipient.values():
                        answers.append(answer)
            stack.kill("delivery")
            killed_at = datetime.now(UTC)
            at_kill = delivered()
            stack.start_service("delivery")

            wanted = {t.attempt_id for t in fast}
            async with asyncio.timeout(180):
                while not wanted <= {a.attempt_id for a in answers}:
                    for record in await responses.poll_batch(1000, timeout=0.5):
                        answer = decode(record.value, DeliveryResponse)
                        if answer.attempt_id in wanted:
                            answers.append(answer)
            proc = stack.procs["delivery"]
            proc.terminate()  # graceful: whatever it still had in flight ends before it exits
            proc.wait(15)
        finally:
            stack.stop()
            await responses.close()
            await producer.close()

    sent = delivered()
    assert set(sent) == set(by_recipient), "every fast attempt reached the sink"
    answered_before_kill = {a.attempt_id for a in answers if a.completed_at < killed_at}
    twice = {by_recipient[r] for r, n in sent.items() if n > 1}
    resent_after_answer = twice & answered_before_kill
    assert not resent_after_answer, (
        f"{len(resent_after_answer)} attempts sent again although their response "
        f"was committed before the kill; {len(at_kill)} delivered by then"
    )
    in_flight_at_kill = {by_recipient[r] for r in at_kill} - answered_before_kill
    assert twice <= in_flight_at_kill
    assert max(sent.values()) <= 2
    # The kill came mid-run, with answered tasks behind partition 0's stuck first one.
    stuck_behind = answered_before_kill & {t.attempt_id for t in fast[:PER_PARTITION]}
    assert stuck_behind, "nothing of partition 0 was answered before the kill"
    print(
        f"delivered before the kill: {len(at_kill)}, answered (committed) by then: {len(answered_before_kill)}, "
        f"sent twice: {len(twice)} (in flight at the kill: {len(in_flight_at_kill)})"
    )
