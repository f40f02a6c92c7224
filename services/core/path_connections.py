"""Connection shaping of one egress path: how many connections may be open, how fast new ones may
open, and how many messages one connection carries before it is retired. Pure: the delivery
worker's dispatcher asks before it connects and reports what it did.

`connection_limit` bounds the open connections, `max_connection_rate` (a GCRA throttle) spaces new
ones, `max_deliveries_per_connection` retires a connection after that many messages. Unset means
unbounded. Failed connection attempts count against the rate: a peer that refuses is not hammered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailstream.core.throttle import Gcra, ThrottleSpec, admit, next_admit_at


@dataclass(frozen=True, slots=True)
class ConnectionShape:
    limit: int | None = None
    rate: ThrottleSpec | None = None
    per_connection: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"connection limit must be at least 1, not {self.limit}")
        if self.per_connection is not None and self.per_connection < 1:
            raise ValueError(f"deliveries per connection must be at least 1, not {self.per_connection}")

    def retired(self, deliveries: int) -> bool:
        """True once a connection has carried as many messages as it may."""
        return self.per_connection is not None and deliveries >= self.per_connection


@dataclass(slots=True)
class PathConnections:
    """Open connections and the connection-rate state of one path."""

    shape: ConnectionShape
    open: int = 0
    gcra: Gcra = field(default_factory=Gcra)

    def next_open_at(self, now: datetime) -> datetime | None:
        """The earliest instant a new connection may open (`now` if it may now); None while the limit is reached."""
        if self.shape.limit is not None and self.open >= self.shape.limit:
            return None
        if self.shape.rate is None:
            return now
        return next_admit_at(self.shape.rate, self.gcra, now)

    def try_open(self, now: datetime) -> bool:
        """Claim a connection slot now, charging the rate; False (nothing changed) if the shape forbids it."""
        at = self.next_open_at(now)
        if at is None or at > now:
            return False
        if self.shape.rate is not None:
            _, self.gcra, _ = admit(self.shape.rate, self.gcra, now)
        self.open += 1
        return True

    def closed(self) -> None:
        if self.open < 1:
            raise ValueError("no open connection to close")
        self.open -= 1
