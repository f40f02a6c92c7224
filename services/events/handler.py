"""What a stream processor drives: a partitioned handler, and the seam it writes through.

`mailstream.events.processor.TransactionalProcessor` runs a handler on Kafka transactions and
`mailstream.events.memory.MemoryProcessor` runs the same handler in memory; the scheduler's stages
are handlers. No Kafka here, so a handler and its tests need none.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable


class Writes(Protocol):
    """One transaction's writes: outputs, and state changelog writes for an owned partition."""

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None: ...

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """A state changelog write; None deletes the key."""


class PartitionHandler(Protocol):
    """Partitioned, in-memory state machine; its state changes are durable only through ``out.put``.

    After a failed transaction the processor calls ``revoked`` and then ``assigned`` again with the
    committed state, so any change not mirrored by a put is lost there (as it would be in a crash).
    ``on_record`` gets b"" for an input tombstone; a record it cannot read (or fails on) it raises for,
    and the processor sets it aside in the dead-letter topic. ``on_tick`` runs after the batch's records,
    only while the member owns partitions, once ``tick_interval`` has passed on the injected clock.
    """

    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None: ...

    def revoked(self, partition: int) -> None: ...

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None: ...

    def on_tick(self, now: datetime, out: Writes) -> None: ...


@runtime_checkable
class PreparesBatches(Protocol):
    """A handler that looks something up for a batch before the batch's transaction begins.

    ``prepare`` gets the batch's records (partition, topic, value), or none before a tick alone, and may
    do I/O bounded in time (its results cached, each distinct thing asked once); ``on_record`` then uses
    what it found and records the decision in its outputs and state, so a replay reads the decision
    instead of asking again. Failing to find something must leave the handler a fallback, not raise.
    """

    def prepare(self, records: Sequence[tuple[int, str, bytes]], now: datetime) -> None: ...
