"""Stage 2's changelog keys: each shape it writes, built and parsed here alone.

    h:<transaction id>          a message waiting for egress capacity (ReadyMessage)
    g:                          the egress grouping the partition settled under (EgressSettlement)
    l:s:<source>                a source's day count and sliding window (LimitState)
    l:p:<source>-><site>        an egress path's message rate (LimitState)
    l:w:<pool>|<destination>    a pool's round-robin position for one destination domain (LimitState)
    a:<rule>|<source>-><site>   a shaping rule's counted replies and action on an egress path (ShapingControl)

A limit's scope (the key without "l:") is also what a UsageHandover names on mail.ready. The bytes
are the changelog's format: state already written restores only if they never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mailstream.core.egress_path import EgressPath
from mailstream.scheduler.shaping import SHAPED, Shaped
from mailstream.scheduler.stage import LIMIT, LimitScope, MalformedKey, split

HELD = "h:"
SETTLEMENT = "g:"
SOURCE = "s:"
PATH = "p:"
ROTATION = "w:"


@dataclass(frozen=True, slots=True)
class Held:
    tx_id: str

    def key(self) -> bytes:
        return (HELD + self.tx_id).encode()


@dataclass(frozen=True, slots=True)
class Settlement:
    def key(self) -> bytes:
        return SETTLEMENT.encode()


@dataclass(frozen=True, slots=True)
class SourceLimit(LimitScope):
    KIND: ClassVar[str] = SOURCE  # name: the source


@dataclass(frozen=True, slots=True)
class PathRate(LimitScope):
    KIND: ClassVar[str] = PATH  # name: the path's key, "source->site"

    def __post_init__(self) -> None:
        try:
            EgressPath.parse(self.name)
        except ValueError as exc:
            raise MalformedKey(str(exc)) from None

    @property
    def path(self) -> EgressPath:
        return EgressPath.parse(self.name)


@dataclass(frozen=True, slots=True)
class Rotation(LimitScope):
    KIND: ClassVar[str] = ROTATION  # name: "<pool>|<destination>"

    def __post_init__(self) -> None:
        pool, bar, destination = self.name.rpartition("|")  # a domain has no "|"; a pool's name might
        if not (pool and bar and destination):
            raise MalformedKey(f"rotation {self.name!r} is not <pool>|<destination>")

    @classmethod
    def of(cls, pool: str, destination: str) -> Rotation:
        """The rotation of `pool` for mail to `destination` (the routing domain, else the recipient's)."""
        return cls(f"{pool}|{destination}")

    @property
    def pool(self) -> str:
        return self.name.rpartition("|")[0]


Scope = SourceLimit | PathRate | Rotation
Key = Held | Settlement | Scope | Shaped


_SCOPES: dict[str, type[Scope]] = {SourceLimit.KIND: SourceLimit, PathRate.KIND: PathRate, Rotation.KIND: Rotation}


def parse_scope(scope: str) -> Scope:
    kind, name = split(scope, tuple(_SCOPES))
    return _SCOPES[kind](name)


def parse(raw: bytes) -> Key:
    """The key's shape; MalformedKey if it has none of them."""
    if raw == SETTLEMENT.encode():
        return Settlement()
    kind, rest = split(raw, (HELD, LIMIT, SHAPED))
    if kind == SHAPED:
        return Shaped(rest)
    return Held(rest) if kind == HELD else parse_scope(rest)
