"""Producing and consuming through a real broker: serde, keys, topics and bodies."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from mailstream.core.partitioner import partition_of
from mailstream.events import fixtures
from mailstream.events.bodies import BodyCorrupt, BodyReader, put_body
from mailstream.events.kafka import EventConsumer, EventProducer, KafkaUnavailable, ensure_topics
from mailstream.events.records import DeliveryTask
from mailstream.events.serde import decode
from mailstream.events.topics import ALL_TOPICS, BODIES, TopicSpec

pytestmark = pytest.mark.integration


def _spec(partitions: int = 4) -> TopicSpec[DeliveryTask]:
    return TopicSpec(f"test.{uuid.uuid4().hex[:10]}", "test key", (DeliveryTask,), partitions=partitions)


def test_ensure_topics_creates_once_and_refuses_a_partition_mismatch(kafka_bootstrap: str) -> None:
    spec = _spec(4)
    ensure_topics(kafka_bootstrap, [spec])
    ensure_topics(kafka_bootstrap, [spec])  # idempotent
    topic = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics[spec.name]
    assert len(topic.partitions) == 4
    with pytest.raises(KafkaUnavailable, match="has 4 partitions"):
        ensure_topics(kafka_bootstrap, [TopicSpec(spec.name, "k", (DeliveryTask,), partitions=8)])


def test_all_declared_topics_are_created_with_their_policies(kafka_bootstrap: str) -> None:
    ensure_topics(kafka_bootstrap, ALL_TOPICS)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for spec in ALL_TOPICS:
        resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
        config = admin.describe_configs([resource])[resource].result(timeout=10)
        assert config["cleanup.policy"].value == spec.cleanup_policy
        assert config["max.message.bytes"].value == str(spec.max_message_bytes)


async def test_records_round_trip_and_keys_land_where_the_stages_compute(kafka_bootstrap: str) -> None:
    spec = _spec(8)
    ensure_topics(kafka_bootstrap, [spec])
    producer = EventProducer(kafka_bootstrap)
    keys = [f"tenant-{i}@example.com" for i in range(40)]
    try:
        sent = await asyncio.gather(*(producer.send(spec, k, fixtures.task()) for k in keys))
    finally:
        await producer.close()
    # The stages compute key placement themselves: it must be the partition librdkafka chose.
    for key, where in zip(keys, sent, strict=True):
        assert partition_of(key.encode(), 8) == where.partition

    consumer = EventConsumer(kafka_bootstrap, f"g-{uuid.uuid4().hex[:8]}", [spec.name])
    got: list[tuple[str, DeliveryTask]] = []
    try:
        for _ in range(60):
            batch = await consumer.poll_batch(100, timeout=0.5)
            got += [((m.key or b"").decode(), decode(m.value, DeliveryTask)) for m in batch]
            await consumer.commit(batch)
            if len(got) >= len(keys):
                break
    finally:
        await consumer.close()
    assert sorted(k for k, _ in got) == sorted(keys)
    assert all(task == fixtures.task() for _, task in got)


async def test_committed_offsets_resume_after_restart(kafka_bootstrap: str) -> None:
    spec = _spec(1)
    ensure_topics(kafka_bootstrap, [spec])
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = EventProducer(kafka_bootstrap)
    try:
        for i in range(5):
            await producer.send(spec, f"k{i}", fixtures.task())
    finally:
        await producer.close()

    async def read(n: int, commit_upto: int) -> list[int]:
        consumer = EventConsumer(kafka_bootstrap, group, [spec.name])
        seen: list[int] = []
        try:
            for _ in range(60):
                batch = await consumer.poll_batch(n, timeout=0.5)
                seen += [m.offset for m in batch]
                if len(seen) >= n:
                    break
            await consumer.commit([m for m in batch if m.offset < commit_upto])
        finally:
            await consumer.close()
        return seen

    first = await read(5, commit_upto=3)  # effects of offsets 3 and 4 "not durable": no commit
    assert first == [0, 1, 2, 3, 4]
    assert await read(2, commit_upto=5) == [3, 4]


async def test_bodies_are_written_once_and_read_back_by_reference(kafka_bootstrap: str) -> None:
    ensure_topics(kafka_bootstrap, [BODIES])
    producer = EventProducer(kafka_bootstrap)
    data = b"Subject: big\r\n\r\n" + b"x" * (2 * 1024 * 1024) + b"\r\n"
    try:
        ref = await put_body(producer, data)
    finally:
        await producer.close()
    assert ref.size == len(data)
    reader = BodyReader(kafka_bootstrap)
    try:
        assert await reader.get(ref) == data
        assert await reader.get(ref) == data  # from the cache
    finally:
        reader.close()


async def test_body_reads_are_batched_and_every_pass_reads_again(kafka_bootstrap: str) -> None:
    """Bodies asked for together are read in one pass per partition; a later pass over the same partitions
    still reads (a partition paused at the end of one pass must not stay paused in the next)."""
    ensure_topics(kafka_bootstrap, [BODIES])
    producer = EventProducer(kafka_bootstrap)
    try:
        datas = [f"Subject: {i}\r\n\r\n{uuid.uuid4()}\r\n".encode() for i in range(120)]
        refs = await asyncio.gather(*(put_body(producer, d) for d in datas))
    finally:
        await producer.close()
    reader = BodyReader(kafka_bootstrap, max_span=50, cache_bytes=1)  # every pass reads from Kafka
    try:
        for lo, hi in ((0, 60), (60, 120), (0, 120)):
            got = await asyncio.gather(*(reader.get(r) for r in refs[lo:hi]))
            assert got == datas[lo:hi]
        stale = refs[0].model_copy(update={"sha256": "0" * 64})
        with pytest.raises(BodyCorrupt):
            await reader.get(stale)
    finally:
        reader.close()
