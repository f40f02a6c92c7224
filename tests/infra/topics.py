"""Reading a topic's end offsets, to prove that a request wrote nothing."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "mailstream-test-watermarks"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        consumer.close()
