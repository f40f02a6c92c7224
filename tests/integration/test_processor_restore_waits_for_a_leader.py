"""A stage restoring a partition whose leader its client does not know yet (a node just restarted, leadership
moving) asks again instead of exiting: the chaos run on a cluster saw the scheduler exit on _UNKNOWN_PARTITION.

Here the partition is one of a topic created a moment after the question is asked, which the client meets the
same way.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from mailstream.events.kafka import ensure_topics
from mailstream.events.processor.clients import ProcessorFatalError
from mailstream.events.processor.restore import watermark_offsets
from mailstream.events.records import LimitState
from mailstream.events.topics import TopicSpec

pytestmark = [pytest.mark.integration]


def _spec(name: str) -> TopicSpec[LimitState]:
    return TopicSpec(name, "any", (LimitState,), partitions=1, retention_ms=60_000)


def test_watermarks_of_a_partition_without_a_known_leader_are_asked_again(kafka_bootstrap: str) -> None:
    topic = f"test.restore-leader.{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "restore-leader", "allow.auto.create.topics": False}
    )
    try:
        with pytest.raises(KafkaException):  # what the stage met, and exited on
            consumer.get_watermark_offsets(TopicPartition(topic, 0), 2.0)
        later = threading.Timer(1.0, lambda: ensure_topics(kafka_bootstrap, [_spec(topic)]))
        later.start()
        assert watermark_offsets(consumer, TopicPartition(topic, 0), 30.0) == (0, 0)
        later.join()
        with pytest.raises(ProcessorFatalError):  # not forever
            watermark_offsets(consumer, TopicPartition(f"{topic}.never", 0), 1.0)
    finally:
        consumer.close()
