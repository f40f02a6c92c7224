"""In-memory twin of the Kafka topics, the producer and the transactional processor, for simulations,
benchmarks and tests.

Handlers written for `TransactionalProcessor` (`mailstream.events.handler.PartitionHandler`) run here
unchanged: topics are lists, a changelog is a dict per partition, every partition is owned by the one
processor, and time is whatever the caller says. Code written against `EventSink` (as `EventProducer`
provides it) writes to the same lists through `MemoryProducer`. Unlike Kafka, the twin refuses a
handler's output or changelog write, and a producer's record, of a type its topic does not declare, so
every test that runs a stage or a service on it checks `topics.py` against what is written (raw bytes
put on the bus directly are left alone: a test's garbage).
Nothing here is durable; it exists so scheduling can be simulated over days in seconds
and a service's own code tested without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from mailstream.core.partitioner import partition_of
from mailstream.events.group_commit import OutcomeUnknown
from mailstream.events.handler import PartitionHandler, PreparesBatches
from mailstream.events.kafka import Delivered, KafkaUnavailable
from mailstream.events.records import Record
from mailstream.events.topics import ALL_TOPICS, PARTITIONS, TopicSpec

R = TypeVar("R", bound=Record)
SPECS = {t.name: t for t in ALL_TOPICS}


def _check(topic: TopicSpec[Any] | None, value: bytes) -> None:
    """Refuse a value whose record type the topic does not declare (records of other topics aside)."""
    if topic is not None and topic.values and not topic.carries(value):
        topic.decode(value)  # raises SerdeError naming what the topic carries and what this is


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    topic: str
    partition: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class MemoryBus:
    partitions: int
    topics: dict[str, list[MemoryRecord]] = field(default_factory=dict)

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        if partition is None:
            partition = partition_of(key or b"", self.partitions)  # where Kafka would put it
        self.topics.setdefault(topic, []).append(MemoryRecord(topic, partition, key, value))

    def read(self, topic: str, start: int = 0) -> list[MemoryRecord]:
        return self.topics.get(topic, [])[start:]


class MemoryProducer:
    """`EventProducer`'s twin (an `EventSink`): a record lands on the bus as soon as it is sent, in the partition
    Kafka would give it, and is acknowledged with its offset there. While `unavailable` holds a reason, every
    send and flush fails with KafkaUnavailable, as against a cluster that refuses writes.
    """

    def __init__(self, bus: MemoryBus | None = None) -> None:
        self.bus = bus if bus is not None else MemoryBus(PARTITIONS)
        self.unavailable: str | None = None
        self.closed = False
        self._next_offset: dict[tuple[str, int], int] = {}
        self._counted: dict[str, tuple[list[MemoryRecord], int]] = {}  # (the topic's list, how many numbered)

    async def send(self, topic: TopicSpec[R], key: str, record: R, partition: int | None = None) -> Delivered:
        return await self.send_raw(topic.name, key.encode(), topic.encode(record), partition)

    async def send_raw(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Delivered:
        self._writable()
        if partition is None:
            partition = partition_of(key or b"", self.bus.partitions)  # as MemoryBus.send places it
        self.bus.send(topic, key, value, partition)
        self._count(topic)
        return Delivered(topic, partition, self._next_offset[topic, partition] - 1)

    async def flush(self, timeout: float = 30.0) -> None:
        self._writable()  # every record sent is on the bus already

    async def close(self) -> None:
        await self.flush()
        self.closed = True

    def records(self, topic: TopicSpec[Any] | str) -> list[MemoryRecord]:
        """Everything on `topic`, in the order it was sent."""
        return self.bus.read(topic if isinstance(topic, str) else topic.name)

    def _writable(self) -> None:
        if self.closed:
            raise KafkaUnavailable("the producer is closed")
        if self.unavailable is not None:
            raise KafkaUnavailable(self.unavailable)

    def _count(self, topic: str) -> None:
        """Number the records of `topic` not numbered yet, whoever wrote them, per partition from 0 as Kafka
        does. Offsets go on growing after a reader discarded the topic (`MemoryProcessor.step(discard=True)`)."""
        records = self.bus.topics.get(topic, [])
        numbered, start = self._counted.get(topic, (None, 0))
        if numbered is not records:  # discarded and begun anew: everything on it is new
            start = 0
        for record in records[start:]:
            where = (topic, record.partition)
            self._next_offset[where] = self._next_offset.get(where, 0) + 1
        self._counted[topic] = (records, len(records))


@dataclass(slots=True)
class MemoryOutput:
    bus: MemoryBus
    changelog: dict[int, dict[bytes, bytes]]
    keep_changelog: bool = True  # off in benchmarks: the changelog lives in Kafka, not in the worker
    changelog_topic: TopicSpec[Any] | None = None  # when named, what is put must be of its record types

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        _check(SPECS.get(topic), value)
        self.bus.send(topic, key, value, partition)

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        if value is not None:
            _check(self.changelog_topic, value)
        if not self.keep_changelog:
            return
        state = self.changelog.setdefault(partition, {})
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value


class MemoryProcessor:
    """Feeds every new record of its input topics' owned partitions to the handler, in order.

    `owned` defaults to every partition. `resume_from` is a changelog (shared, as Kafka's is) to
    restart from: the handler's state comes back from it and reading starts after what the inputs
    already hold, as a member resuming from committed offsets would. `changelog` names the stage's
    changelog topic, whose record types the handler's state writes must be of.
    """

    def __init__(
        self,
        bus: MemoryBus,
        inputs: Sequence[str],
        handler: PartitionHandler,
        *,
        keep_changelog: bool = True,
        owned: Iterable[int] | None = None,
        resume_from: dict[int, dict[bytes, bytes]] | None = None,
        changelog: TopicSpec[Any] | None = None,
    ) -> None:
        self.bus, self.inputs, self.handler = bus, tuple(inputs), handler
        self.owned = frozenset(range(bus.partitions) if owned is None else owned)
        self.read_upto = {t: len(bus.read(t)) if resume_from is not None else 0 for t in self.inputs}
        self.out = MemoryOutput(bus, resume_from if resume_from is not None else {}, keep_changelog, changelog)
        for p in sorted(self.owned):
            handler.assigned(p, dict(self.out.changelog.get(p, {})))

    def step(self, now: datetime, *, discard: bool = False) -> int:
        """Process everything new on the inputs; returns how many records were handled.

        With `discard`, the records read are dropped from the bus (a benchmark's bounded memory).
        """
        handled = 0
        for topic in self.inputs:
            fresh = self.bus.read(topic, self.read_upto[topic])
            if discard:
                self.bus.topics.pop(topic, None)
                self.read_upto[topic] = 0
            else:
                self.read_upto[topic] += len(fresh)
            owned = [r for r in fresh if r.partition in self.owned]
            if owned and isinstance(self.handler, PreparesBatches):
                self.handler.prepare([(r.partition, topic, r.value) for r in owned], now)
            for record in owned:
                self.handler.on_record(record.partition, topic, record.key, record.value, now, self.out)
                handled += 1
        return handled

    def tick(self, now: datetime) -> None:
        if isinstance(self.handler, PreparesBatches):
            self.handler.prepare([], now)
        self.handler.on_tick(now, self.out)


class MemoryTransactions:
    """`group_commit.TransactionalWriter`'s twin: a record set lands on the bus whole, or (while the producer is
    `unavailable`) not at all. `fail_next` makes the next sets fail as aborted transactions; `commit_delay`
    makes each commit take that long, and a caller whose timeout is shorter gets OutcomeUnknown while the set
    still lands when the delay is over (a commit that finished after its request's deadline); `commit_gate`, when
    set, holds every commit until the test sets the event (the same, without a race against the clock)."""

    def __init__(self, producer: MemoryProducer) -> None:
        self.producer = producer
        self.fail_next = 0
        self.commit_delay = 0.0
        self.commit_gate: asyncio.Event | None = None
        self.transactions = 0

    def start(self) -> None:
        """Nothing to open: there is no predecessor's transaction to abort."""

    async def write(self, records: Sequence[tuple[str, bytes, bytes]], *, timeout: float) -> None:
        self.producer._writable()
        if self.fail_next:
            self.fail_next -= 1
            raise KafkaUnavailable("transaction aborted (fail_next)")
        commit = asyncio.ensure_future(self._commit(list(records), self.commit_delay))
        try:
            await asyncio.wait_for(asyncio.shield(commit), timeout)
        except TimeoutError:
            raise OutcomeUnknown(f"the write's commit did not finish within {timeout:g} s", commit) from None

    async def _commit(self, records: list[tuple[str, bytes, bytes]], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        for topic, key, value in records:
            await self.producer.send_raw(topic, key, value)
        self.transactions += 1

    async def close(self) -> None:
        """Nothing to release: the producer it writes through is closed by its owner."""
