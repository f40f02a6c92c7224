"""When a backlog is sent at current capacities ("this campaign will complete in about 2 days").

Each source contributes, day by day in the daily-reset timezone, what its daily cap leaves (today:
what is left of it), only while its send window is open, and no faster than its sliding window
allows (spread evenly: `limit` per `span`). A source without a cap or sliding window sends as fast
as it is asked, so its share goes the moment it is open. Rates of paths, tenants and queues, and
retry times, are not modelled: the estimate is the egress capacity's answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mailstream.core.daily_limit import day_of, next_reset
from mailstream.core.send_window import SendWindow
from mailstream.core.sliding_window import SlidingWindow

HORIZON = timedelta(days=180)


@dataclass(frozen=True, slots=True)
class SourceCapacity:
    daily_limit: int | None
    used_today: int = 0
    send_window: SendWindow | None = None
    sliding_window: SlidingWindow | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    at: datetime | None  # None: not within the horizon (or no source at all)
    phrase: str
    sending_days: int  # calendar days (reset timezone) from today to the finishing one, both counted; 0: none


@dataclass(frozen=True, slots=True)
class _Block:
    """`count` sends spread evenly over [start, end]; start == end: all at once."""

    start: datetime
    end: datetime
    count: float

    def done_by(self, t: datetime) -> float:
        if t < self.start:
            return 0.0
        if t >= self.end:
            return self.count
        return self.count * (t - self.start) / (self.end - self.start)


def _open_spans(window: SendWindow | None, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    if window is None:
        yield start, end
        return
    t = window.next_open(start)
    while t < end:
        closes = window.closes_at(t)
        assert closes is not None  # next_open answered an open instant
        yield t, min(closes, end)
        t = window.next_open(closes)


def _day_blocks(source: SourceCapacity, allowance: float, start: datetime, end: datetime) -> Iterator[_Block]:
    for opens, closes in _open_spans(source.send_window, start, end):
        if allowance <= 0:
            return
        if source.sliding_window is None:
            yield _Block(opens, opens, allowance)
            return
        per_second = source.sliding_window.limit / source.sliding_window.span.total_seconds()
        count = min(allowance, per_second * (closes - opens).total_seconds())
        yield _Block(opens, opens + timedelta(seconds=count / per_second), count)
        allowance -= count


def estimate_completion(
    backlog: int,
    sources: Sequence[SourceCapacity],
    now: datetime,
    reset_zone: ZoneInfo,
    *,
    horizon: timedelta = HORIZON,
) -> Completion:
    if backlog <= 0:
        return Completion(now, "nothing to send", 0)
    if not sources:
        return Completion(None, "never: no egress source", 0)
    blocks: list[_Block] = []
    day_start, total = now, 0.0
    while total < backlog:
        if day_start >= now + horizon:
            return Completion(None, f"not within {horizon.days} days at current capacities", 0)
        day_end = next_reset(day_start, reset_zone)
        for source in sources:
            cap = math.inf if source.daily_limit is None else float(source.daily_limit)
            allowance = max(0.0, cap - source.used_today) if day_start == now else cap
            for block in _day_blocks(source, allowance, day_start, day_end):
                blocks.append(block)
                total += block.count
        day_start = day_end
    # The filled count only grows with time: bisect to the second at which it reaches the backlog.
    low, high = now, max(b.end for b in blocks)
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if sum(b.done_by(mid) for b in blocks) >= backlog:
            high = mid
        else:
            low = mid
    done = low if sum(b.done_by(low) for b in blocks) >= backlog else high
    # A burst (a source without a sliding window) lands on an instant: answer that, not a second after it.
    edges = sorted({t for b in blocks for t in (b.start, b.end) if low <= t < done})
    done = next((t for t in edges if sum(b.done_by(t) for b in blocks) >= backlog), done)
    days = (day_of(done, reset_zone) - day_of(now, reset_zone)).days + 1
    return Completion(done, describe(done - now), days)


def describe(remaining: timedelta) -> str:
    """A human phrase for a wait: 'under a minute', 'about 40 minutes', 'about 5 hours', 'about 2 days'."""
    seconds = remaining.total_seconds()
    if seconds < 60:
        return "under a minute"
    if seconds < 90 * 60:
        n = round(seconds / 60)
        return f"about {n} minute{'s' if n != 1 else ''}"
    if seconds < 36 * 3600:
        return f"about {round(seconds / 3600)} hours"
    return f"about {round(seconds / 86400)} days"
