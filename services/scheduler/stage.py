"""What the two scheduler stages share: the write seam, the common parts of changelog keys, limit state, timers.

A stage is a `PartitionHandler` for `mailstream.events.processor.TransactionalProcessor`: every
state change is a changelog `put` and every output a `send`, and the processor commits both with
the consumed offsets in one Kafka transaction. The in-memory twin (`mailstream.events.memory`)
drives the same stages without a broker, for simulations and benchmarks.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from mailstream.core.daily_limit import DailyUsage
from mailstream.events.handler import Writes
from mailstream.events.records import LimitState, Record
from mailstream.events.serde import decode, encode
from mailstream.events.topics import TopicSpec
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
R = TypeVar("R", bound=Record)
S = TypeVar("S", bound="LimitScope")
K = TypeVar("K")


def send(out: Writes, topic: TopicSpec[R], key: str, record: R, partition: int | None = None) -> None:
    """Write a record of a type `topic` carries (mypy and `TopicSpec.encode` both refuse another)."""
    out.send(topic.name, key.encode(), topic.encode(record), partition)


LIMIT = "l:"  # both stages keep each LimitState under "l:" + its scope


class MalformedKey(ValueError):
    """A changelog key of none of the shapes its stage writes."""


def split(key: bytes | str, prefixes: tuple[str, ...]) -> tuple[str, str]:
    """(prefix, rest) of a key that starts with one of `prefixes` and names something after it."""
    try:
        text = key.decode() if isinstance(key, bytes) else key
    except UnicodeDecodeError:
        raise MalformedKey(f"{key!r} is not UTF-8") from None
    for prefix in prefixes:
        if text.startswith(prefix) and len(text) > len(prefix):
            return prefix, text[len(prefix) :]
    raise MalformedKey(f"{text!r} is none of {', '.join(p + '...' for p in prefixes)}")


@dataclass(frozen=True, slots=True)
class LimitScope:
    """What a LimitState counts: a `KIND` (the stages' key modules declare them) and a name."""

    KIND: ClassVar[str]
    name: str

    @property
    def scope(self) -> str:
        """ "<kind><name>", as a UsageHandover names it."""
        return self.KIND + self.name

    def key(self) -> bytes:
        return (LIMIT + self.scope).encode()


def entries(state: dict[bytes, bytes], parse: Callable[[bytes], K], partition: int) -> Iterator[tuple[K, bytes]]:
    """A restored changelog's entries with their keys parsed; a key of no shape is logged and passed over."""
    for raw, value in state.items():
        try:
            yield parse(raw), value
        except MalformedKey as exc:
            log.error("changelog_key_unreadable", partition=partition, error=str(exc))


class Coalesced:
    """A `Writes` for one handler call: outputs pass straight on, changelog writes wait for `flush` and keep
    only the last value per key; a key first written in the call (`new`) and deleted in it is not written.

    Every write of the call still lands in the call's transaction, so what a restore reads is the same:
    a message accepted and promoted at once costs one state write, one held and released at once none.
    Values are encoded at `flush`, only for the writes that survive (`put` takes a thunk for that).
    """

    __slots__ = ("_new", "_puts", "out")

    def __init__(self, out: Writes) -> None:
        self.out = out
        self._puts: dict[tuple[int, bytes], bytes | Callable[[], bytes] | None] = {}
        self._new: set[tuple[int, bytes]] = set()

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.out.send(topic, key, value, partition)

    def put(self, partition: int, key: bytes, value: bytes | Callable[[], bytes] | None, *, new: bool = False) -> None:
        where = (partition, key)
        if new and where not in self._puts:
            self._new.add(where)
        if value is None and where in self._new:
            self._puts.pop(where, None)  # never written: nothing to delete
            self._new.discard(where)
            return
        self._puts[where] = value

    def flush(self) -> None:
        puts, self._puts, self._new = self._puts, {}, set()
        for (partition, key), value in puts.items():
            self.out.put(partition, key, value() if callable(value) else value)


def coalesced(out: Writes) -> Coalesced:
    """`out` itself when it already coalesces (a call nested in another), else a new `Coalesced` over it."""
    return out if isinstance(out, Coalesced) else Coalesced(out)


@contextmanager
def handler_call(out: Writes, pack: Callable[[], None]) -> Iterator[Coalesced]:
    """One handler call's writes: coalesced, flushed when the call ends (however it ends), then `pack` packs
    what the call left decoded."""
    batched = coalesced(out)
    try:
        yield batched
    finally:
        batched.flush()
        pack()


class Limits(Generic[S]):
    """The LimitState of each scope a partition owns, written through to its changelog."""

    def __init__(self) -> None:
        self._states: dict[S, LimitState] = {}

    def restore(self, scope: S, value: bytes) -> None:
        self._states[scope] = decode(value, LimitState)

    def get(self, scope: S) -> LimitState:
        return self._states.get(scope) or LimitState()

    def set(self, out: Writes, partition: int, scope: S, state: LimitState) -> None:
        self._states[scope] = state
        if isinstance(out, Coalesced):
            out.put(partition, scope.key(), lambda: encode(state))  # encoded once, if still the last
        else:
            out.put(partition, scope.key(), encode(state))

    def drop(self, out: Writes, partition: int, scope: S) -> None:
        del self._states[scope]
        out.put(partition, scope.key(), None)

    def items(self) -> list[tuple[S, LimitState]]:
        return list(self._states.items())


def daily(state: LimitState) -> DailyUsage:
    """A scope's count of the day, for `mailstream.core.daily_limit` to reckon with."""
    return DailyUsage(date.fromisoformat(state.day) if state.day else None, state.used)


def counted(state: LimitState, usage: DailyUsage, **changes: object) -> LimitState:
    """The state with the day's count `usage` (and other `changes`)."""
    return state.model_copy(update={"day": usage.day.isoformat() if usage.day else None, "used": usage.used, **changes})


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
