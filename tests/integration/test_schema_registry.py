"""The Confluent wire format against a real broker and a real Confluent-compatible registry (Apicurio, started by
deploy/schema-registry/registry.sh): ingest configured with kafka.schema_registry registers its subjects at
start-up (`<topic>-value`, compatibility BACKWARD) and writes records that confluent_kafka's own AvroDeserializer
reads unchanged, as Kafka Connect's AvroConverter would; mailstream's readers read them too. An unreachable
registry stops a service at start-up with a clear error, and so does a schema the registry refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from mailstream.config.kafka import SchemaRegistryConfig
from mailstream.events.kafka import ensure_topics
from mailstream.events.records import LogRecord
from mailstream.events.serde import SerdeError, framing, use_wire_format
from mailstream.events.topics import ACCEPTED, ALL_TOPICS, EVENTS, STATUS, TopicSpec
from mailstream.events.wire import RegistryError, RegistryIds
from tests.infra.stack import ACME_KEY, Stack, private_bootstrap, stack_config
from tests.infra.topics import end_offsets, read_all

pytestmark = pytest.mark.integration


def _inject(stack: Stack, run: str) -> list[str]:
    with stack.client(ACME_KEY) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "ops@acme.test",
                "recipients": [{"email": f"sr-{run}-{n}@example.com"} for n in range(3)],
                "metadata": {"campaign": f"sr-{run}"},
                "content": {"subject": f"registry {run}", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    return [str(t["id"]) for t in r.json()["transactions"]]


def _read(bootstrap: str, spec: TopicSpec[Any], start: list[int]) -> list[bytes]:
    return [v for _, _, _, v in read_all(bootstrap, spec.name, spec.partitions, start=start) if v is not None]


@pytest.fixture
def own_bootstrap(kafka_bootstrap: str, tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own: the Confluent-framed records it writes stay off the shared broker, whose other
    tests read the topics whole with no registry configured (as a service without kafka.schema_registry must)."""
    with private_bootstrap(kafka_bootstrap, tmp_path / "own-broker") as bootstrap:
        yield bootstrap


def test_ingest_writes_what_a_confluent_deserializer_reads(
    own_bootstrap: str, schema_registry: str, tmp_path: Path
) -> None:
    ensure_topics(own_bootstrap, ALL_TOPICS)
    run = uuid.uuid4().hex[:8]
    starts = {s.name: end_offsets(own_bootstrap, s.name, s.partitions) for s in (EVENTS, ACCEPTED, STATUS)}
    config = stack_config(
        own_bootstrap, ("127.0.0.1", 9), tmp_path, kafka={"schema_registry": {"url": schema_registry}}
    )
    stack = Stack(config, tmp_path)
    stack.start_service("ingest")  # registers at start-up, then serves
    try:
        ids = _inject(stack, run)
    finally:
        stack.stop()

    with SchemaRegistryClient({"url": schema_registry}) as client:
        for subject in ("mail.events-value", "mail.accepted-value", "mail.status-value"):
            assert client.get_compatibility(subject) == "BACKWARD"
        deserialize = AvroDeserializer(client)  # as shipped: no reader schema, no hooks
        events = _read(own_bootstrap, EVENTS, starts[EVENTS.name])
        mine = []
        for value in events:  # since the start: any other writer's records too, in whichever framing
            if value[:1] == b"\x00":
                datum = deserialize(value, SerializationContext(EVENTS.name, MessageField.VALUE))
                if datum["id"] in ids:
                    mine.append(datum)
        accepted = [
            deserialize(v, SerializationContext(ACCEPTED.name, MessageField.VALUE))
            for v in _read(own_bootstrap, ACCEPTED, starts[ACCEPTED.name])
            if v[:1] == b"\x00"
        ]
        statuses = [
            deserialize(v, SerializationContext(STATUS.name, MessageField.VALUE))
            for v in _read(own_bootstrap, STATUS, starts[STATUS.name])
            if v[:1] == b"\x00"
        ]
    assert sorted(d["id"] for d in mine) == sorted(ids)
    for datum in mine:
        assert datum["type"] == "Reception"
        assert datum["tenant"] == "acme"
        assert datum["recipient"].startswith(f"sr-{run}-")
        assert isinstance(datum["timestamp"], datetime)  # timestamp-millis came through as a logical type
        assert isinstance(datum["response"]["code"], int)
    assert {a["id"] for a in accepted} >= set(ids)
    assert {s["id"] for s in statuses} >= set(ids)

    # mailstream's own readers take the same bytes, with the registry configured to them
    ids_of = RegistryIds.connect(SchemaRegistryConfig(url=schema_registry))
    use_wire_format(ids_of)
    try:
        records = [EVENTS.decode(v) for v in events if framing(v) == "confluent"]
    finally:
        use_wire_format(None)
    assert {r.id for r in records if isinstance(r, LogRecord)} >= set(ids)
    with pytest.raises(SerdeError, match="schema id 2000000"):
        ids_of.fingerprint(2_000_000)  # garbage starting with 00: the registry has no such id, and says so once
    with pytest.raises(SerdeError, match="is not in the registry"):
        ids_of.fingerprint(2_000_000)
    ids_of.close()

    # and so does the CLI, given the services' file
    cli_config = tmp_path / "cli.yaml"
    cli_config.write_text(
        yaml.safe_dump({"kafka": {"bootstrap_servers": own_bootstrap, "schema_registry": {"url": schema_registry}}})
    )
    export = subprocess.run(
        [sys.executable, "-m", "mailstream", "events", "export", "--since", "30m", "--type", "Reception",
         "--tenant", "acme", "--config", str(cli_config)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": own_bootstrap},
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert {json.loads(line)["id"] for line in export.stdout.splitlines()} >= set(ids)


def test_an_unreachable_registry_stops_a_service_at_start_up(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"kafka:\n  bootstrap_servers: {kafka_bootstrap}\n  schema_registry:\n    url: http://127.0.0.1:1/apis/ccompat/v7\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mailstream.delivery", "--config", str(config)],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "schema registry at http://127.0.0.1:1/apis/ccompat/v7 unavailable" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_schema_the_registry_refuses_as_incompatible_is_a_clear_error(schema_registry: str) -> None:
    topic = TopicSpec(f"test.registry-{uuid.uuid4().hex[:8]}", "id", (LogRecord,))
    subject = f"{topic.name}-value"
    earlier = '{"type":"record","name":"LogRecord","namespace":"mailstream","fields":[{"name":"only","type":"int"}]}'
    ids = RegistryIds.connect(SchemaRegistryConfig(url=schema_registry))
    with SchemaRegistryClient({"url": schema_registry}) as client:
        client.register_schema(subject, Schema(earlier, "AVRO"))
        client.set_compatibility(subject, "BACKWARD")
        with pytest.raises(
            RegistryError, match=rf"refused mailstream\.LogRecord for subject {subject} as incompatible"
        ):
            ids.register([topic])  # the current LogRecord cannot read what that version wrote: required fields
        assert ids.writer_id("mailstream.LogRecord") is None  # nothing would be written with it
        fresh = TopicSpec(f"test.registry-{uuid.uuid4().hex[:8]}", "id", (LogRecord,))
        ids.register([fresh])
        assert ids.writer_id("mailstream.LogRecord") is not None
        assert client.get_compatibility(f"{fresh.name}-value") == "BACKWARD"
    ids.close()
