"""What the two scheduler stages share: the write seam, per-partition limit state, timers.

A stage is a `PartitionHandler` for `mailstream.events.processor.TransactionalProcessor`: every
state change is a changelog `put` and every output a `send`, and the processor commits both with
the consumed offsets in one Kafka transaction. The in-memory twin (`mailstream.events.memory`)
drives the same stages without a broker, for simulations and benchmarks.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from mailstream.events.records import LimitState, Record
from mailstream.events.serde import decode, encode


class Writes(Protocol):
    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None: ...
    def put(self, partition: int, key: bytes, value: bytes | None) -> None: ...


def send(out: Writes, topic: str, key: str, record: Record) -> None:
    out.send(topic, key.encode(), encode(record))


class Limits:
    """The LimitState of each scope a partition owns ("s:<source>", "t:<tenant>", ...), written through."""

    PREFIX = "l:"

    def __init__(self) -> None:
        self._states: dict[str, LimitState] = {}

    def restore(self, key: str, value: bytes) -> None:
        self._states[key] = decode(value, LimitState)

    def get(self, scope: str) -> LimitState:
        return self._states.get(scope) or LimitState()

    def set(self, out: Writes, partition: int, scope: str, state: LimitState) -> None:
        self._states[scope] = state
        out.put(partition, (self.PREFIX + scope).encode(), encode(state))


def restore(state: dict[bytes, bytes], limits: Limits, prefix: str) -> Iterator[tuple[str, bytes]]:
    """Put restored limit scopes into `limits`; yield (name, value) of the entries under `prefix`."""
    for raw_key, value in state.items():
        key = raw_key.decode()
        if key.startswith(Limits.PREFIX):
            limits.restore(key[len(Limits.PREFIX):], value)
        elif key.startswith(prefix):
            yield key[len(prefix):], value


class Timers:
    """Instants at which an item must be looked at again; stale entries are dropped by the caller."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, when: datetime, item: str) -> None:
        heapq.heappush(self._heap, (when, item))

    def due(self, now: datetime) -> list[tuple[datetime, str]]:
        fired = []
        while self._heap and self._heap[0][0] <= now:
            fired.append(heapq.heappop(self._heap))
        return fired
