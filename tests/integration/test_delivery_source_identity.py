"""Through the worker's Kafka loop to a recording sink: a source's `envelope_sender` pattern, else its
`from_email`, is the MAIL FROM of what it sends (the header From untouched, a DSN's null sender kept
null); a source with neither sends the message's own envelope sender; EHLO name and bound address stay
the source's. The response record carries the TLS version
and cipher of each attempt, null in plaintext. Real broker, an aiosmtpd sink as the smarthost."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
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
from tests.infra.smtp_recorder import RecordingSink, self_signed

pytestmark = pytest.mark.integration
HEADER = b"From: News <news@tenant.test>\r\nSubject: identity\r\n\r\nhi\r\n"


def config_for(bootstrap: str, sink: RecordingSink, sources: list[dict[str, Any]]) -> Config:
    return parse_config(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "ingest": {"message_id_domain": "worker.test"},
            "delivery": {
                "group_id": f"delivery-{uuid.uuid4().hex[:8]}",
                "ehlo_domain": "worker.test",
                "smarthost": sink.hostport,
                "connect_timeout": "3s",
                "outbound": {"allow": [sink.hostport]},
            },
            "egress": {
                "sources": sources,
                "pools": [{"name": "all", "entries": [{"name": s["name"]} for s in sources]}],
            },
            "queues": {"egress_pool": "all"},
        },
        env={},
    )


def task(config: Config, tx: str, source: str, sender: str, body: BodyRef) -> DeliveryTask:
    now = datetime.now(UTC)
    site = site_of(config.egress.source(source), config.delivery.smarthost, "example.com")
    return DeliveryTask(
        id=tx,
        attempt=1,
        attempt_id=f"{tx}/1",
        queue="example.com",
        egress_pool="all",
        egress_source=source,
        egress_path=EgressPath(source, site).key(),
        sender=sender,
        recipient=f"{tx}@example.com",
        domain="example.com",
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


async def put(bootstrap: str, data: bytes) -> BodyRef:
    ensure_topics(bootstrap, [BODIES, DELIVERY, RESPONSES])
    producer = EventProducer(bootstrap)
    try:
        return await put_body(producer, data)
    finally:
        await producer.close()


async def test_the_source_sets_the_envelope_sender_and_keeps_its_ehlo_name_and_address(kafka_bootstrap: str) -> None:
    body = await put(kafka_bootstrap, HEADER)
    run = uuid.uuid4().hex[:8]
    sources = [
        {"name": "plain"},
        {"name": "mail1", "from_email": "bounces@mail1.test", "ehlo_domain": "mta1.mail1.test"},
        {
            "name": "verp",
            "from_email": "unused@mail2.test",
            "envelope_sender": "b+{local}={domain}+{id}@bounce.mail2.test",
            "source_address": "127.0.0.3",
        },
    ]
    with RecordingSink() as sink:
        config = config_for(kafka_bootstrap, sink, sources)
        tasks = [
            task(config, f"{run}-plain", "plain", "news@tenant.test", body),
            task(config, f"{run}-mail1", "mail1", "news@tenant.test", body),
            task(config, f"{run}-verp", "verp", "news@tenant.test", body),
            task(config, f"{run}-dsn", "mail1", "", body),  # a DSN: the null sender is never replaced
        ]
        got = await answers(config, tasks)
    assert {tx: a.response.code for tx, a in got.items()} == dict.fromkeys(got, 250)
    # (a new consumer group reads mail.delivery from the start: earlier runs' tasks come here too)
    seen = {tx: m for m in sink.messages if (tx := m.rcpt_tos[0].split("@")[0]).startswith(run)}
    assert {tx: seen[tx].mail_from for tx in seen} == {
        f"{run}-plain": "news@tenant.test",
        f"{run}-mail1": "bounces@mail1.test",
        f"{run}-verp": f"b+news=tenant.test+{run}-verp@bounce.mail2.test",
        f"{run}-dsn": "<>",
    }
    assert all(m.data.count(b"From: News <news@tenant.test>\r\n") == 1 for m in seen.values())  # header untouched
    assert (seen[f"{run}-plain"].ehlo, seen[f"{run}-mail1"].ehlo) == ("worker.test", "mta1.mail1.test")
    peers = {c.peer for c in sink.connections if any(m.rcpt_tos[0].startswith(f"{run}-verp") for m in c.messages)}
    assert peers == {"127.0.0.3"}


async def test_each_response_record_names_the_tls_version_and_cipher(kafka_bootstrap: str, tmp_path: Path) -> None:
    body = await put(kafka_bootstrap, HEADER)
    run = uuid.uuid4().hex[:8]
    with RecordingSink(tls=self_signed(tmp_path)) as secured, RecordingSink() as plain:
        got: dict[str, DeliveryResponse] = {}
        for name, sink in (("secured", secured), ("plain", plain)):
            config = config_for(kafka_bootstrap, sink, [{"name": "s"}])
            got |= await answers(config, [task(config, f"{run}-{name}", "s", "news@tenant.test", body)])
    tls, clear = got[f"{run}-secured"], got[f"{run}-plain"]
    assert (tls.response.code, tls.tls, tls.tls_version) == (250, "TLS", "TLSv1.3")
    assert tls.tls_cipher is not None
    assert tls.tls_cipher.startswith("TLS_")  # a TLS 1.3 suite, e.g. TLS_AES_256_GCM_SHA384
    assert (clear.response.code, clear.tls, clear.tls_version, clear.tls_cipher) == (250, None, None, None)
