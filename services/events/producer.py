"""What a service needs of an event producer, as a protocol: `kafka.EventProducer` writes to the cluster and
`memory.MemoryProducer` (the in-memory twin) to a `MemoryBus`, so code typed against `EventSink` runs on either.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from mailstream.events.kafka import Delivered
from mailstream.events.records import Record
from mailstream.events.topics import TopicSpec

R = TypeVar("R", bound=Record)


class EventSink(Protocol):
    async def send(self, topic: TopicSpec[R], key: str, record: R, partition: int | None = None) -> Delivered:
        """Encode `record` (of a type `topic` carries) and write it under `key`; returns once it is acknowledged.
        `partition` overrides the key's placement."""
        ...

    async def send_raw(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Delivered:
        """Write bytes already encoded; returns once they are acknowledged."""
        ...

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything sent is acknowledged; KafkaUnavailable if that takes longer than `timeout`."""
        ...

    async def close(self) -> None:
        """Flush, then release the producer; nothing may be sent after it."""
        ...
