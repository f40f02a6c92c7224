"""A record on mail.delivery that does not decode is set aside in mail.dead-letter (the record as it was,
the error and its origin in headers) in the transaction that commits its offset, and the worker goes on
with the tasks after it. One whose front still reads (cut short) also gets its attempt answered 451, so
its transaction is deferred and sent again instead of staying in_delivery for ever. Real broker, real SMTP.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY

from mailstream.config.egress_paths import site_of
from mailstream.config.model import Config, parse_config
from mailstream.core.clock import system_clock
from mailstream.core.egress_path import EgressPath
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventConsumer, EventProducer, ensure_topics
from mailstream.events.records import BodyRef, DeliveryResponse, DeliveryTask
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, DEAD_LETTER, DELIVERY, RESPONSES
from tests.infra.smtp_recorder import RecordingSink

pytestmark = pytest.mark.integration


def config_for(bootstrap: str, sink: RecordingSink) -> Config:
    return parse_config(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "ingest": {"message_id_domain": "worker.test"},
            "delivery": {
                "group_id": f"delivery-{uuid.uuid4().hex[:8]}",
                "smarthost": sink.hostport,
                "outbound": {"allow": [sink.hostport]},
                "ehlo_domain": "worker.test",
                "connect_timeout": "5s",
            },
        },
        env={},
    )


def task(config: Config, run: str, n: int, body: BodyRef) -> DeliveryTask:
    now = datetime.now(UTC)
    site = site_of(config.egress.source("unspecified"), config.delivery.smarthost, "example.com")
    tx = f"{run}-{n}"
    return DeliveryTask(
        id=tx,
        attempt=1,
        attempt_id=f"{tx}/1",
        queue="example.com",
        egress_pool="unspecified",
        egress_source="unspecified",
        egress_path=EgressPath("unspecified", site).key(),
        sender="bounce@worker.test",
        recipient=f"r{n}-{run}@example.com",
        domain="example.com",
        tenant="acme",
        body=body,
        created_at=now,
        issued_at=now,
    )


def dead_letters(bootstrap: str, key: bytes) -> list[tuple[bytes, dict[str, str]]]:
    """(value, headers) of each committed dead letter with `key`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dl-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(DEAD_LETTER.name, timeout=10).topics[DEAD_LETTER.name]
        consumer.assign([TopicPartition(DEAD_LETTER.name, p, 0) for p in meta.partitions])  # 0: from the start
        found: list[tuple[bytes, dict[str, str]]] = []
        while msgs := consumer.consume(500, timeout=2.0):
            for m in msgs:
                if m.error() is None and m.key() == key:
                    pairs: list[tuple[str, bytes]] = list(m.headers() or [])  # type: ignore[arg-type]  # as produced
                    found.append((m.value() or b"", {k: v.decode() for k, v in pairs}))
        return found
    finally:
        consumer.close()


def unreadable(answered: str) -> float:
    return REGISTRY.get_sample_value("mailstream_delivery_unreadable_tasks_total", {"answered": answered}) or 0.0


async def test_unreadable_tasks_are_dead_lettered_and_the_tasks_after_them_delivered(kafka_bootstrap: str) -> None:
    ensure_topics(kafka_bootstrap, [BODIES, DELIVERY, RESPONSES, DEAD_LETTER])
    run = uuid.uuid4().hex[:8]
    with RecordingSink() as sink:
        config = config_for(kafka_bootstrap, sink)
        producer = EventProducer(kafka_bootstrap)
        responses = EventConsumer(kafka_bootstrap, f"responses-{run}", [RESPONSES.name])
        worker = DeliveryWorker(config, system_clock)
        before = (unreadable("false"), unreadable("true"))
        running = asyncio.create_task(worker.run())
        try:
            body = await put_body(producer, f"Subject: {run}\r\n\r\nhi\r\n".encode())
            first, cut, last = task(config, run, 0, body), task(config, run, 1, body), task(config, run, 2, body)
            key = first.egress_path.encode()  # one path: one partition, in this order
            garbage = b"\x00not avro at all " + run.encode()
            truncated = DELIVERY.encode(cut)[:-20]  # its body reference and timestamps are cut off
            await producer.send(DELIVERY, first.egress_path, first)
            await producer.send_raw(DELIVERY.name, key, garbage)
            await producer.send_raw(DELIVERY.name, key, truncated)
            await producer.send(DELIVERY, last.egress_path, last)
            wanted = {first.attempt_id, cut.attempt_id, last.attempt_id}
            got: dict[str, DeliveryResponse] = {}
            async with asyncio.timeout(60):
                while not wanted <= got.keys():
                    for record in await responses.poll_batch(500, timeout=0.5):
                        answer = decode(record.value, DeliveryResponse)
                        if answer.attempt_id in wanted:
                            got[answer.attempt_id] = answer
        finally:
            worker.stop()
            await running
            await responses.close()
            await producer.close()

    assert got[first.attempt_id].outcome == got[last.attempt_id].outcome == "DELIVERED"
    assert sorted(m.rcpt_tos[0] for m in sink.messages if run in m.rcpt_tos[0]) == [first.recipient, last.recipient]
    deferred = got[cut.attempt_id]  # its transaction is not left in_delivery: the scheduler sends it again
    assert (deferred.outcome, deferred.response.code, deferred.response.enhanced_code) == ("TRANSIENT", 451, "4.3.0")
    assert "mail.dead-letter" in deferred.response.content
    letters = [(v, h) for v, h in dead_letters(kafka_bootstrap, key) if run.encode() in v]
    assert [value for value, _ in letters] == [garbage, truncated]  # as they were, each once
    for _, headers in letters:
        assert headers["topic"] == DELIVERY.name
        assert headers["processor"] == "delivery"
        assert headers["error"]
        assert int(headers["offset"]) >= 0
    # (Other runs' records on the topic, read by this fresh group, count too.)
    assert unreadable("false") >= before[0] + 1
    assert unreadable("true") >= before[1] + 1
