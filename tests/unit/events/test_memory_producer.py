"""The in-memory producer: EventProducer's methods over a MemoryBus, with Kafka's placement and offsets."""

from __future__ import annotations

import pytest

from mailstream.core.partitioner import partition_of
from mailstream.events import fixtures
from mailstream.events.kafka import Delivered, EventProducer, KafkaUnavailable
from mailstream.events.memory import MemoryBus, MemoryProducer
from mailstream.events.producer import EventSink
from mailstream.events.records import TransactionStatus
from mailstream.events.serde import decode
from mailstream.events.topics import STATUS

# Checked by mypy: both producers are EventSinks, so code typed against the protocol runs on either.
SINKS: tuple[type[EventSink], ...] = (EventProducer, MemoryProducer)


async def test_records_are_placed_by_key_and_numbered_per_partition() -> None:
    producer = MemoryProducer(MemoryBus(8))
    key = "tx-1"
    home = partition_of(key.encode(), 8)
    first = await producer.send(STATUS, key, fixtures.status())
    second = await producer.send(STATUS, key, fixtures.status().model_copy(update={"version": 3}))
    elsewhere = await producer.send(STATUS, key, fixtures.status(), partition=(home + 1) % 8)
    assert (first, second) == (Delivered(STATUS.name, home, 0), Delivered(STATUS.name, home, 1))
    assert elsewhere == Delivered(STATUS.name, (home + 1) % 8, 0)
    records = producer.records(STATUS)
    assert [r.key for r in records] == [b"tx-1"] * 3
    assert [decode(r.value, TransactionStatus).version for r in records] == [2, 3, 2]
    assert producer.records("mail.elsewhere") == []


async def test_raw_records_without_a_key_and_other_writers_are_numbered_too() -> None:
    bus = MemoryBus(1)
    producer = MemoryProducer(bus)
    bus.send("t", b"k", b"written by a stage twin")
    assert await producer.send_raw("t", None, b"v") == Delivered("t", 0, 1)
    assert await producer.send_raw("t", b"k", b"v") == Delivered("t", 0, 2)


async def test_offsets_go_on_after_a_reader_discards_the_topic() -> None:
    bus = MemoryBus(1)
    producer = MemoryProducer(bus)
    for _ in range(3):
        await producer.send_raw("t", b"k", b"v")
    bus.topics.pop("t")  # what MemoryProcessor.step(discard=True) does
    assert await producer.send_raw("t", b"k", b"v") == Delivered("t", 0, 3)


async def test_an_unavailable_or_closed_producer_refuses_writes() -> None:
    producer = MemoryProducer()
    producer.unavailable = "Local: Broker transport failure"
    with pytest.raises(KafkaUnavailable, match="Broker transport failure"):
        await producer.send(STATUS, "tx-1", fixtures.status())
    with pytest.raises(KafkaUnavailable):
        await producer.flush()
    assert producer.bus.topics == {}
    producer.unavailable = None
    await producer.flush()
    await producer.close()
    assert producer.closed
    with pytest.raises(KafkaUnavailable, match="closed"):
        await producer.send_raw("t", b"k", b"v")
