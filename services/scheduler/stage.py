"""What the two scheduler stages share: the write seam, per-partition limit state, timers.

A stage is a `PartitionHandler` for `mailstream.events.processor.TransactionalProcessor`: every
state change is a changelog `put` and every output a `send`, and the processor commits both with
the consumed offsets in one Kafka transaction. The in-memory twin (`mailstream.events.memory`)
drives the same stages without a broker, for simulations and benchmarks.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from mailstream.core.daily_limit import DailyUsage
from mailstream.events.records import LimitState, Record
from mailstream.events.serde import decode, encode
from mailstream.events.topics import TopicSpec

R = TypeVar("R", bound=Record)


class Writes(Protocol):
    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None: ...
    def put(self, partition: int, key: bytes, value: bytes | None) -> None: ...


def send(out: Writes, topic: TopicSpec[R], key: str, record: R, partition: int | None = None) -> None:
    """Write a record of a type `topic` carries (mypy and `TopicSpec.encode` both refuse another)."""
    out.send(topic.name, key.encode(), topic.encode(record), partition)


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

    def drop(self, out: Writes, partition: int, scope: str) -> None:
        del self._states[scope]
        out.put(partition, (self.PREFIX + scope).encode(), None)

    def scopes(self, prefix: str) -> Iterator[tuple[str, LimitState]]:
        """(name, state) of the scopes "<prefix><name>" held."""
        for scope, state in self._states.items():
            if scope.startswith(prefix):
                yield scope[len(prefix):], state


def daily(state: LimitState) -> DailyUsage:
    """A scope's count of the day, for `mailstream.core.daily_limit` to reckon with."""
    return DailyUsage(date.fromisoformat(state.day) if state.day else None, state.used)


def counted(state: LimitState, usage: DailyUsage, **changes: object) -> LimitState:
    """The state with the day's count `usage` (and other `changes`)."""
    return state.model_copy(update={"day": usage.day.isoformat() if usage.day else None, "used": usage.used,
                                    **changes})


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


class Snapshots(Generic[R]):
    """Publishes records that describe a stage's state to a compacted topic, for read models (the
    capacity API): at most once per `every`, and only the records whose content changed since.

    What was published is remembered in memory only, so a restart or a new owner republishes all.
    """

    def __init__(self, topic: TopicSpec[R], every: timedelta) -> None:
        self.topic, self.every = topic, every
        self._published: dict[str, dict[str, Any]] = {}
        self._next: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self._next is not None and self._next - self.every <= now < self._next:
            return False  # (a clock set back makes it due at once)
        self._next = now + self.every
        return True

    def offer(self, out: Writes, key: str, record: R, *, ignore: frozenset[str] = frozenset({"as_of"})) -> None:
        content = record.model_dump(exclude=set(ignore))
        if self._published.get(key) != content:
            self._published[key] = content
            send(out, self.topic, key, record)

    def keys(self, prefix: str = "") -> list[str]:
        return [k for k in self._published if k.startswith(prefix)]

    def forget(self, prefix: str = "") -> None:
        for key in self.keys(prefix):
            del self._published[key]
