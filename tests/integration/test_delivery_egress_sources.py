"""The delivery worker sends each task through its egress source: the source's relay (with its
credentials and STARTTLS), else the smarthost; from the source's address, with its EHLO name.
Real Kafka, real SMTP servers on loopback.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailstream.config.egress_paths import site_of
from mailstream.config.model import Config, parse_config
from mailstream.core.clock import system_clock
from mailstream.core.egress_path import EgressPath
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventConsumer, EventProducer, ensure_topics
from mailstream.events.records import DeliveryResponse, DeliveryTask
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, DELIVERY, RESPONSES
from tests.infra.smtp_recorder import RecordingSink

pytestmark = pytest.mark.integration


CA_FILE = "ca.pem"  # in the test's tmp_path: the CA relay A's certificate is verified against


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[tuple[RecordingSink, RecordingSink, RecordingSink]]:
    """Relay A (STARTTLS with a certificate from a test CA, AUTH alice), relay B (plain, no AUTH), and the
    smarthost."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    authority.cert_pem.write_to_path(str(tmp_path / CA_FILE))
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "a.crt"))
    issued.private_key_pem.write_to_path(str(tmp_path / "a.key"))
    with (
        RecordingSink(tls=(tmp_path / "a.crt", tmp_path / "a.key"), logins={"alice": "alice-secret"}) as a,
        RecordingSink() as b,
        RecordingSink() as smarthost,
    ):
        yield a, b, smarthost


def worker_config(
    bootstrap: str, a: RecordingSink, b: RecordingSink, smarthost: RecordingSink, ca_file: Path
) -> Config:
    def relay(sink: RecordingSink, **extra: Any) -> dict[str, Any]:
        return {"host": sink.address[0], "port": sink.address[1], **extra}

    login = {"username": "alice", "starttls": "required", "ca_file": str(ca_file)}

    sources: list[dict[str, Any]] = [
        {
            "name": "src-a",
            "ehlo_domain": "a.mailstream.test",
            "relay": relay(a, password="alice-secret", **login),
        },
        {
            "name": "src-b",
            "ehlo_domain": "b.mailstream.test",
            "source_address": "127.0.0.2",
            "relay": relay(b, starttls="disabled"),
        },
        {"name": "src-c", "source_address": "127.0.0.3"},  # no relay: the smarthost
        {"name": "src-d", "relay": relay(a, password="wrong", **login)},
    ]
    return parse_config(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "ingest": {"message_id_domain": "worker.test"},
            "delivery": {
                "group_id": f"delivery-{uuid.uuid4().hex[:8]}",
                "smarthost": smarthost.hostport,
                "outbound": {"allow": ["127.0.0.0/8"]},  # the relays are on loopback, which the default denies
                "ehlo_domain": "worker.test",
                "connect_timeout": "5s",
                "command_timeout": "10s",
            },
            "egress": {
                "sources": sources,
                "pools": [{"name": "all", "entries": [{"name": s["name"]} for s in sources]}],
            },
            "queues": {"egress_pool": "all"},
        },
        env={},
    )


async def run_tasks(config: Config, tasks: list[DeliveryTask], timeout: float = 60.0) -> dict[str, DeliveryResponse]:
    """Publish the tasks, run a worker until every one is answered on mail.responses, return the answers."""
    bootstrap = config.kafka.bootstrap_servers
    ensure_topics(bootstrap, [BODIES, DELIVERY, RESPONSES])
    responses = EventConsumer(bootstrap, f"responses-{uuid.uuid4().hex[:8]}", [RESPONSES.name])
    producer = EventProducer(bootstrap)
    worker = DeliveryWorker(config, system_clock)
    running = asyncio.create_task(worker.run())
    wanted = {t.attempt_id for t in tasks}
    got: dict[str, DeliveryResponse] = {}
    try:
        for task in tasks:
            await producer.send(DELIVERY, task.egress_path, task)
        async with asyncio.timeout(timeout):
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
    return got


async def test_each_source_sends_through_its_own_relay_or_the_smarthost(
    kafka_bootstrap: str, relays: tuple[RecordingSink, RecordingSink, RecordingSink], tmp_path: Path
) -> None:
    a, b, smarthost = relays
    config = worker_config(kafka_bootstrap, a, b, smarthost, tmp_path / CA_FILE)
    run = uuid.uuid4().hex[:8]
    producer = EventProducer(kafka_bootstrap)
    try:
        ensure_topics(kafka_bootstrap, [BODIES])
        body = await put_body(producer, f"Subject: {run}\r\n\r\nhello\r\n".encode())
    finally:
        await producer.close()
    now = datetime.now(UTC)
    tasks = []
    for source in ("src-a", "src-b", "src-c", "src-d"):
        site = site_of(config.egress.source(source), config.delivery.smarthost, "example.com")
        for i in range(2):
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

    answers = await run_tasks(config, tasks)

    def received(sink: RecordingSink) -> list[tuple[str, str | None, bool, str | None]]:
        """(source, EHLO name, TLS, login) of each message of this run; the sender names the source."""
        return sorted(
            (m.mail_from.split("@")[1].removesuffix(".test"), m.ehlo, m.tls, m.login)
            for m in sink.messages
            if run in m.rcpt_tos[0]
        )

    assert received(a) == [("src-a", "a.mailstream.test", True, "alice")] * 2
    assert received(b) == [("src-b", "b.mailstream.test", False, None)] * 2
    assert received(smarthost) == [("src-c", "worker.test", False, None)] * 2
    assert {c.peer for c in b.connections} == {"127.0.0.2"}  # bound to the source's address
    assert {c.peer for c in smarthost.connections} == {"127.0.0.3"}
    for task in tasks:
        answer = answers[task.attempt_id]
        if task.egress_source == "src-d":  # a relay refusing our credentials defers; it never bounces
            assert (answer.outcome, answer.response.code, answer.response.enhanced_code) == ("TRANSIENT", 451, "4.7.8")
            continue
        assert (answer.outcome, answer.response.code) == ("DELIVERED", 250)
        relay = {"src-a": a, "src-b": b, "src-c": smarthost}[task.egress_source]
        assert answer.peer_address == relay.hostport
        assert answer.tls == ("TLS" if task.egress_source == "src-a" else None)
