"""Services talk to a secured cluster: TLS verified against the cluster's CA, SCRAM-SHA-512 with the password read
from a file. The project's own client builders work over the SASL_SSL listener, the whole pipeline delivers
through it (a client built without the settings could not connect at all), and a wrong password stops a service
at start-up with the cause named instead of leaving it waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mailstream.config.model import parse_config
from mailstream.devtools.capture_sink import CaptureSink
from mailstream.events.group_commit import TransactionalWriter
from mailstream.events.kafka import Cluster, EventConsumer, EventProducer, KafkaUnavailable, ensure_topics
from mailstream.events.records import LimitState
from mailstream.events.topics import TopicSpec
from tests.infra.broker import unavailable_reason
from tests.infra.secured_broker import SecuredBroker, secured_broker
from tests.infra.stack import ADMIN_KEY, Stack, free_port, stack_config

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    sb = secured_broker(tmp_path_factory.mktemp("secured"))
    sb.broker.start()
    try:
        yield sb
    finally:
        sb.broker.stop()


def cluster(sb: SecuredBroker, **override: Any) -> Cluster:
    return Cluster.of(parse_config({"kafka": {**sb.kafka_section(), **override}}, {}).kafka)


async def test_producer_transactions_and_consumer_work_over_sasl_ssl(secured: SecuredBroker) -> None:
    spec = TopicSpec(f"secured-{uuid.uuid4().hex[:8]}", "any", (LimitState,), partitions=1)
    where = cluster(secured)
    ensure_topics(where, [spec], min_insync_replicas=1)
    producer = EventProducer(where)
    await producer.send_raw(spec.name, b"plain", b"one")
    await producer.close()
    writer = TransactionalWriter(where, f"secured-{uuid.uuid4().hex[:8]}")
    writer.start()
    await writer.write([(spec.name, b"txn", b"two")], timeout=30)
    await writer.close()
    consumer = EventConsumer(where, f"secured-{uuid.uuid4().hex[:8]}", [spec.name])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        got += [r.value for r in await consumer.poll_batch(timeout=0.5)]
    await consumer.close(5)
    assert got == [b"one", b"two"]


def test_a_wrong_password_fails_at_once_naming_the_cause(secured: SecuredBroker, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=r"(?i)authentication"):
        ensure_topics(cluster(secured, sasl_password_file=str(wrong)), [], timeout=30)
    assert time.monotonic() - started < 15, "waited out the timeout instead of failing on the refusal"


def test_an_unverifiable_broker_certificate_is_refused(secured: SecuredBroker, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(secured_broker(tmp_path / "other").ca_file.read_bytes())  # a CA that did not sign it
    with pytest.raises(KafkaUnavailable, match=r"(?i)ssl|certificate"):
        ensure_topics(cluster(secured, ssl_ca_location=str(other_ca)), [], timeout=30)


def test_a_service_given_a_wrong_password_exits_at_start_up_saying_why(secured: SecuredBroker, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    config = {
        "kafka": secured.kafka_section(password_file=wrong),
        "ingest": {"port": free_port(), "status_db": str(tmp_path / "status.sqlite3")},
    }
    (tmp_path / "ingest.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "mailstream.ingest", "--config", str(tmp_path / "ingest.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        # KAFKA_BOOTSTRAP_SERVERS (the suite's plaintext broker, exported by scripts/test.sh) would override the
        # config's secured listener.
        env={k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Authentication failed" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_pipeline_delivers_through_the_sasl_ssl_listener(secured: SecuredBroker, tmp_path: Path) -> None:
    sink = CaptureSink().start()
    stack = Stack(
        stack_config(secured.secured_bootstrap, sink.address, tmp_path, kafka=secured.kafka_section()), tmp_path
    )
    try:
        stack.start()
        recipient = f"secured-{uuid.uuid4().hex[:8]}@example.com"
        with httpx.Client(base_url=stack.api, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as c:
            r = c.post(
                "/api/inject/v1",
                json={
                    "envelope_sender": "s@acme.test",
                    "recipients": [{"email": recipient}],
                    "content": {"subject": "secured", "text_body": "over TLS and SCRAM"},
                },
            )
        assert r.status_code == 200, r.text
        stack.wait_status(r.json()["transactions"][0]["id"], {"delivered"})
        assert [m.rcpt_tos for m in sink.messages] == [(recipient,)]
    finally:
        stack.stop()
        sink.stop()
