"""Sliding-window limits ("at most 2 per 30 minutes"): the sends of the last `span` are kept and counted.

The state is the (sorted) instants of recent sends, pruned as it goes, so it never holds much more than `limit`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class SlidingWindow:
    """At most `limit` sends in any `span`; a send stops counting exactly `span` after it happened."""

    limit: int
    span: timedelta

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"sliding window limit must be at least 1, not {self.limit}")
        if self.span <= timedelta(0):
            raise ValueError(f"sliding window span must be positive, not {self.span}")


def _as_utc(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"{now!r} is naive: pass a timezone-aware datetime")
    return now.astimezone(UTC)


def _in_window(window: SlidingWindow, sent: tuple[datetime, ...], now: datetime) -> tuple[datetime, ...]:
    """The sends that still count at `now`, in order. (Sorting a state kept sorted is one pass; instants
    compare across time zones, so none is converted.)"""
    try:
        kept = sorted(sent)
        return tuple(kept[bisect_right(kept, now - window.span) :])
    except TypeError:  # a naive instant cannot be compared with an aware one
        raise ValueError(f"{sent!r} holds a naive instant: pass timezone-aware datetimes") from None


def admit(window: SlidingWindow, sent: tuple[datetime, ...], now: datetime) -> tuple[bool, tuple[datetime, ...]]:
    """(admitted, new state): the state is pruned either way and gains `now` (in UTC) when admitted."""
    utc = _as_utc(now)
    kept = _in_window(window, sent, utc)
    if len(kept) >= window.limit:
        return False, kept
    at = bisect_right(kept, utc)  # the end, unless the clock was set back
    return True, (*kept[:at], utc, *kept[at:])


def next_free(window: SlidingWindow, sent: tuple[datetime, ...], now: datetime) -> datetime:
    """`now` if a send is admissible, else when enough old sends have left the window (in the timezone of `now`)."""
    kept = _in_window(window, sent, _as_utc(now))
    if len(kept) < window.limit:
        return now
    # With more than `limit` in the window (the limit was lowered) all but limit − 1 of them must leave first.
    return (kept[len(kept) - window.limit] + window.span).astimezone(now.tzinfo)
