"""In-memory twin of the Kafka topics and the transactional processor, for simulations and benchmarks.

Handlers written for `TransactionalProcessor` run here unchanged: topics are lists, a changelog is a
dict per partition, every partition is owned by the one processor, and time is whatever the caller
says. Nothing here is durable; it exists so scheduling can be simulated over days in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mailstream.core.partitioner import partition_of


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    topic: str
    partition: int
    key: bytes | None
    value: bytes


class Handler(Protocol):
    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None: ...
    def on_record(self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime,
                  out: MemoryOutput) -> None: ...
    def on_tick(self, now: datetime, out: MemoryOutput) -> None: ...


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


@dataclass(slots=True)
class MemoryOutput:
    bus: MemoryBus
    changelog: dict[int, dict[bytes, bytes]]
    keep_changelog: bool = True  # off in benchmarks: the changelog lives in Kafka, not in the worker

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.bus.send(topic, key, value, partition)

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
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
    already hold, as a member resuming from committed offsets would.
    """

    def __init__(self, bus: MemoryBus, inputs: Sequence[str], handler: Handler, *,
                 keep_changelog: bool = True, owned: Iterable[int] | None = None,
                 resume_from: dict[int, dict[bytes, bytes]] | None = None) -> None:
        self.bus, self.inputs, self.handler = bus, tuple(inputs), handler
        self.owned = frozenset(range(bus.partitions) if owned is None else owned)
        self.read_upto = {t: len(bus.read(t)) if resume_from is not None else 0 for t in self.inputs}
        self.out = MemoryOutput(bus, resume_from if resume_from is not None else {}, keep_changelog)
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
            for record in fresh:
                if record.partition in self.owned:
                    self.handler.on_record(record.partition, topic, record.key, record.value, now, self.out)
                    handled += 1
        return handled

    def tick(self, now: datetime) -> None:
        self.handler.on_tick(now, self.out)
