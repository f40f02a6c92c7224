"""Reading topics as a test's witness: end offsets, committed offsets, every record, key placement."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from mailstream.events.kafka import ensure_topics, producer_config
from mailstream.events.records import LimitState
from mailstream.events.topics import TopicSpec

_NOT_YET = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._UNKNOWN_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
Record = tuple[int, int, bytes, bytes | None]  # partition, offset, key, value (None: tombstone)
Offsets = dict[tuple[str, int], int]  # (topic, partition) -> offset


def end_offsets(bootstrap: str, topic: str, partitions: int, *, timeout: float = 15.0) -> list[int]:
    """High watermarks; retried while a new topic's partitions still elect their leaders."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "mailstream-test-watermarks"})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return [
                    consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
                ]
            except KafkaException as exc:
                if exc.args[0].code() not in _NOT_YET or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets (-1001: none); read_committed waits out pending transactional commits."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed"})
    try:
        return [tp.offset for tp in probe.committed([TopicPartition(topic, p) for p in range(partitions)], 10)]
    finally:
        probe.close()


def read_all(
    bootstrap: str,
    topic: str,
    partitions: int,
    *,
    start: list[int] | None = None,
    isolation: str = "read_committed",
    timeout: float = 45.0,
) -> list[Record]:
    """Every record from `start` (default: the beginning) up to the current high watermark.

    read_committed waits out open transactions and skips aborted ones."""
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10,
    }
    first = start or [0] * partitions
    ends = {p: end for p, end in enumerate(end_offsets(bootstrap, topic, partitions)) if end > first[p]}
    reader = Consumer({**conf, "isolation.level": isolation})
    reader.assign([TopicPartition(topic, p, first[p]) for p in ends])
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while ends:
            got += [
                (m.partition() or 0, m.offset() or 0, m.key() or b"", m.value())
                for m in reader.consume(1000, 0.1)
                if m.error() is None
            ]
            for tp in reader.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
            assert time.monotonic() < deadline, f"{topic}: partitions {sorted(ends)} not readable to the end"
    finally:
        reader.close()
    return got


def latest_by_key(records: list[Record]) -> dict[bytes, bytes]:
    """A compacted topic's view: the last value of each key, tombstones removing it."""
    state: dict[bytes, bytes] = {}
    for _, _, key, value in sorted(records, key=lambda r: (r[0], r[1])):
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def partitions_of(bootstrap: str, keys: list[str], partitions: int) -> dict[str, int]:
    """Where the services' producers (murmur2) place each key, learnt from librdkafka itself."""
    probe = f"test.placement.{uuid.uuid4().hex[:10]}"
    ensure_topics(bootstrap, [TopicSpec(probe, "any", (LimitState,), partitions=partitions, retention_ms=60_000)])
    producer = Producer(producer_config(bootstrap))
    placed: dict[str, int] = {}

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        placed[(msg.key() or b"").decode()] = msg.partition() or 0

    try:
        for key in keys:
            producer.produce(probe, key=key.encode(), value=b"", on_delivery=delivered)
        assert producer.flush(30) == 0
    finally:
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics([probe])
    assert set(placed) == set(keys)
    return placed


def topic_offsets(bootstrap: str, prefixes: tuple[str, ...]) -> Offsets:
    """High watermarks of every partition of every topic whose name starts with one of `prefixes`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "mailstream-test-watermarks"})
    try:
        meta = consumer.list_topics(timeout=10).topics
        return {
            (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
            for t in meta
            if t.startswith(prefixes)
            for p in meta[t].partitions
        }
    finally:
        consumer.close()


def bytes_written(bootstrap: str, start: Offsets, end: Offsets) -> dict[str, int]:
    """len(key) + len(value) of every record between two offset snapshots, by topic (read back,
    aborted transactions included: they were written too)."""
    todo = {tp: high for tp, high in end.items() if high > start.get(tp, 0)}
    totals = dict.fromkeys((t for t, _ in end), 0)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bytes-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    consumer.assign([TopicPartition(t, p, start.get((t, p), 0)) for t, p in todo])
    deadline = time.monotonic() + 60
    try:
        while todo:
            assert time.monotonic() < deadline, f"not readable to the end: {sorted(todo)}"
            for msg in consumer.consume(1000, 0.2):
                tp, offset = (msg.topic() or "", msg.partition() or 0), msg.offset() or 0
                if msg.error() is None and tp in todo and offset < todo[tp]:
                    totals[tp[0]] += len(msg.key() or b"") + len(msg.value() or b"")
            # The position, not the last record: a transaction marker may hold the last offset.
            for pos in consumer.position([TopicPartition(t, p) for t, p in todo]):
                if pos.offset >= todo[(pos.topic, pos.partition)]:
                    del todo[(pos.topic, pos.partition)]
    finally:
        consumer.close()
    return totals
