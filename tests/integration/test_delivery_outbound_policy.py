"""End to end through the worker's Kafka loop: a task whose routing_domain (a tenant's choice) or MX points at
loopback is answered 550 5.7.1 without any connection being made; the same task is delivered when the
operator allows the address; a relay the allow list lacks defers (451 4.7.1). Real broker, the loopback DNS
server, an aiosmtpd sink."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mailstream.config.egress_paths import site_of
from mailstream.config.model import Config, parse_config
from mailstream.core.clock import system_clock
from mailstream.core.egress_path import EgressPath
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventConsumer, EventProducer, ensure_topics
from mailstream.events.records import BodyRef, DeliveryResponse, DeliveryTask
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, DELIVERY, RESPONSES
from tests.infra.dns_server import LoopbackDns
from tests.infra.smtp_recorder import RecordingSink

pytestmark = pytest.mark.integration


@pytest.fixture
def servers() -> Iterator[tuple[LoopbackDns, RecordingSink]]:
    with (
        RecordingSink() as sink,
        LoopbackDns(
            {
                ("internal.test", "MX"): ["10 mx.internal.test."],
                ("mx.internal.test", "A"): ["127.0.0.1"],
                ("metadata.test", "A"): ["169.254.169.254"],  # no MX: its own exchanger, a cloud metadata service
            }
        ) as dns,
    ):
        yield dns, sink


def config_for(bootstrap: str, dns: LoopbackDns, sink: RecordingSink, outbound: dict[str, Any]) -> Config:
    return parse_config(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "ingest": {"message_id_domain": "worker.test"},
            "delivery": {
                "group_id": f"delivery-{uuid.uuid4().hex[:8]}",
                "ehlo_domain": "worker.test",
                "nameservers": [dns.address],
                "smtp_port": sink.address[1],
                "connect_timeout": "3s",
                "outbound": outbound,
            },
            "egress": {
                "sources": [{"name": "direct"}, {"name": "relayed", "relay": {"host": "127.0.0.1", "port": 2}}],
                "pools": [{"name": "all", "entries": [{"name": "direct"}, {"name": "relayed"}]}],
            },
            "queues": {"egress_pool": "all"},
        },
        env={},
    )


def task(config: Config, run: str, name: str, source: str, routing_domain: str | None, body: BodyRef) -> DeliveryTask:
    now = datetime.now(UTC)
    site = site_of(config.egress.source(source), config.delivery.smarthost, routing_domain or "example.com")
    tx = f"{run}-{name}"
    return DeliveryTask(
        id=tx,
        attempt=1,
        attempt_id=f"{tx}/1",
        queue="example.com",
        egress_pool="all",
        egress_source=source,
        egress_path=EgressPath(source, site).key(),
        sender="bounce@worker.test",
        recipient=f"{name}-{run}@example.com",
        domain="example.com",
        routing_domain=routing_domain,
        tenant="acme",
        body=body,
        created_at=now,
        issued_at=now,
    )


async def answers(config: Config, tasks: list[DeliveryTask]) -> dict[str, DeliveryResponse]:
    bootstrap = config.kafka.bootstrap_servers
    responses = EventConsumer(bootstrap, f"responses-{uuid.uuid4().hex[:8]}", [RESPONSES.name])
    producer = EventProducer(bootstrap)
    worker = DeliveryWorker(config, system_clock)
    running = asyncio.create_task(worker.run())
    got: dict[str, DeliveryResponse] = {}
    try:
        for t in tasks:
            await producer.send(DELIVERY, t.egress_path, t)
        async with asyncio.timeout(60):
            while not {t.attempt_id for t in tasks} <= got.keys():
                for record in await responses.poll_batch(500, timeout=0.5):
                    answer = decode(record.value, DeliveryResponse)
                    got[answer.attempt_id] = answer
    finally:
        worker.stop()
        await running
        await responses.close()
        await producer.close()
    return {t.id: got[t.attempt_id] for t in tasks}


async def test_the_worker_never_connects_where_the_policy_denies(
    kafka_bootstrap: str, servers: tuple[LoopbackDns, RecordingSink]
) -> None:
    dns, sink = servers
    ensure_topics(kafka_bootstrap, [BODIES, DELIVERY, RESPONSES])
    run = uuid.uuid4().hex[:8]
    producer = EventProducer(kafka_bootstrap)
    try:
        body = await put_body(producer, f"Subject: {run}\r\n\r\nhi\r\n".encode())
    finally:
        await producer.close()

    denying = config_for(kafka_bootstrap, dns, sink, {})
    tasks = [
        task(denying, run, "routed", "direct", "internal.test", body),
        task(denying, run, "metadata", "direct", "metadata.test", body),
        task(denying, run, "relayed", "relayed", None, body),
    ]
    got = await answers(denying, tasks)
    assert sink.connections == []
    routed, metadata, relayed = (got[f"{run}-{n}"] for n in ("routed", "metadata", "relayed"))
    assert (routed.outcome, routed.response.code, routed.response.enhanced_code) == ("PERMANENT", 550, "5.7.1")
    assert "127.0.0.1 (loopback address) of internal.test denied by policy" in routed.response.content
    assert (metadata.response.code, metadata.response.enhanced_code) == (550, "5.7.1")
    assert "169.254.169.254 (link-local address)" in metadata.response.content
    assert (relayed.outcome, relayed.response.code, relayed.response.enhanced_code) == ("TRANSIENT", 451, "4.7.1")
    assert routed.peer_address is None

    allowing = config_for(kafka_bootstrap, dns, sink, {"allow": [sink.hostport]})
    again = task(allowing, run, "allowed", "direct", "internal.test", body)
    assert (await answers(allowing, [again]))[again.id].outcome == "DELIVERED"
    # (This fresh group reads the topic from its start, so the denied tasks above now go out too.)
    assert [m.rcpt_tos for m in sink.messages].count((again.recipient,)) == 1
