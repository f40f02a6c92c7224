"""Send-time windows ("08:00–18:00 Europe/Berlin, Mon-Fri"), DST-safe.

A window is a series of spans, one per eligible local date D: it opens at the first instant the local clock reads
D `start` and closes at the first instant after that at which the clock reads `end` (on D, or on D+1 when the window
runs overnight). "First instant" makes every wall time meaningful: a time skipped by a DST jump means the moment
the clock jumps past it, and a time that occurs twice means its first occurrence (the window does not reopen in a
repeated hour). Everything is computed on those spans in UTC, so `contains`, `next_open` and `closes_at` agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
_EVERY_DAY = frozenset(range(7))
_MICROSECOND = timedelta(microseconds=1)


def first_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the clock in `tz` reads `day` `at` or later.

    That is the instant itself for an ordinary wall time, the first occurrence of a repeated one, and the moment of
    the jump for one a DST change skips.
    """
    wall = datetime.combine(day, at)
    # PEP 495: fold=0 and fold=1 map a repeated wall time to its two occurrences and a skipped one to either side
    # of the jump; the earlier of the two is the answer unless the time was skipped.
    lo, hi = sorted(wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1))
    if _wall(lo, tz) >= wall:
        return lo
    # Skipped: the jump lies in (lo, hi]; the local clock only moves forward there, so bisect to the microsecond.
    low, high = 0, (hi - lo) // _MICROSECOND
    while high - low > 1:
        mid = (low + high) // 2
        if _wall(lo + mid * _MICROSECOND, tz) >= wall:
            high = mid
        else:
            low = mid
    return lo + high * _MICROSECOND


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _as_utc(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"{now!r} is naive: pass a timezone-aware datetime")
    return now.astimezone(UTC)


def _parse_time(text: str) -> time:
    match = _HHMM.fullmatch(text.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"send window time {text!r} is not HH:MM (00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def _parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as "Europe"
        raise ValueError(f"send window timezone {name!r} is not a known IANA zone (e.g. 'Europe/Berlin')") from None


def _parse_day(name: str) -> int:
    key = name.strip().lower()
    for names in (_DAYS, _FULL_DAYS):
        if key in names:
            return names.index(key)
    raise ValueError(f"send window weekday {name!r} is not one of Mon, Tue, Wed, Thu, Fri, Sat, Sun")


def _parse_weekdays(weekdays: str | Sequence[str]) -> frozenset[int]:
    """ "Mon,Wed", "Mon-Fri", ["mon", "tue"]; a range may wrap ("Fri-Mon" is Fri, Sat, Sun, Mon)."""
    parts = weekdays.split(",") if isinstance(weekdays, str) else [p for item in weekdays for p in item.split(",")]
    days: set[int] = set()
    for part in parts:
        first, dash, last = part.partition("-")
        if not dash:
            days.add(_parse_day(part))
            continue
        begin, end = _parse_day(first), _parse_day(last)
        days.update((begin + i) % 7 for i in range((end - begin) % 7 + 1))
    return frozenset(days)


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Open from `start` (inclusive) to `end` (exclusive) local time in `tz` on `weekdays` (0 = Monday).

    When `end` < `start` the window runs overnight and belongs to the weekday on which it starts.
    """

    start: time
    end: time
    tz: ZoneInfo
    weekdays: frozenset[int] = _EVERY_DAY
    # (asked_at, opens, closes) of the last lookup: schedulers ask about the same span many times a second.
    _last: list[tuple[datetime, datetime, datetime]] = field(
        default_factory=list, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("send window start and end are local wall times: they must not carry a tzinfo")
        if self.start == self.end:
            raise ValueError(
                f"send window start and end are both {self.start.isoformat('minutes')}: the window would be empty"
            )
        if not self.weekdays or not self.weekdays <= _EVERY_DAY:
            raise ValueError(f"send window weekdays {sorted(self.weekdays)} must be a non-empty subset of 0..6")

    @classmethod
    def parse(cls, start: str, end: str, tz: str = "UTC", weekdays: str | Sequence[str] | None = None) -> SendWindow:
        """Build from config strings; ValueError names the bad value."""
        days = _EVERY_DAY if weekdays is None else _parse_weekdays(weekdays)
        return cls(_parse_time(start), _parse_time(end), _parse_zone(tz), days)

    def _spans(self, first_day: date) -> Iterator[tuple[datetime, datetime]]:
        """Non-empty (open, close) spans in UTC for eligible days from `first_day` on, in order."""
        day = first_day
        while True:
            if day.weekday() in self.weekdays:
                close_day = day if self.end > self.start else day + timedelta(days=1)
                opens = first_instant(day, self.start, self.tz)
                closes = first_instant(close_day, self.end, self.tz)
                if opens < closes:  # empty when a DST jump skips the whole window
                    yield opens, closes
            day += timedelta(days=1)

    def _span_from(self, utc: datetime) -> tuple[datetime, datetime]:
        """The first span that has not closed by `utc`."""
        if self._last:
            asked, opens, closes = self._last[0]
            if asked <= utc < closes:  # every earlier span closed by `asked`, so this one is still first
                return opens, closes
        # Two days back covers an overnight span plus a clock set back across midnight.
        start_day = _wall(utc, self.tz).date() - timedelta(days=2)
        opens, closes = next((o, c) for o, c in self._spans(start_day) if c > utc)
        self._last[:] = [(utc, opens, closes)]
        return opens, closes

    def contains(self, now: datetime) -> bool:
        utc = _as_utc(now)
        opens, _ = self._span_from(utc)
        return opens <= utc

    def next_open(self, now: datetime) -> datetime:
        """`now` if the window is open, else the next instant it opens, in the timezone of `now`."""
        utc = _as_utc(now)
        opens, _ = self._span_from(utc)
        return now if opens <= utc else opens.astimezone(now.tzinfo)

    def closes_at(self, now: datetime) -> datetime | None:
        """When the open span containing `now` ends (in the timezone of `now`); None if the window is closed.

        Spans that touch (a DST jump can make one open the instant the previous closes) count as one.
        """
        utc = _as_utc(now)
        opens, closes = self._span_from(utc)
        if opens > utc:
            return None
        while True:
            opens, following = self._span_from(closes)
            if opens > closes:
                return closes.astimezone(now.tzinfo)
            closes = following


def all_open(windows: Sequence[SendWindow], now: datetime) -> bool:
    """Whether every window is open at `now` (True for no windows)."""
    return all(window.contains(now) for window in windows)


def next_open_all(
    windows: Sequence[SendWindow], now: datetime, horizon: timedelta = timedelta(days=8)
) -> datetime | None:
    """The earliest instant ≥ now at which every window is open, or None if there is none by now + horizon.

    Any common instant is at or after each window's next opening, so jumping to the latest of those never skips one.
    """
    limit = _as_utc(now) + horizon
    candidate = now
    while True:
        # next_open answers in the timezone of its argument, so every candidate stays in that of `now`.
        latest = max((window.next_open(candidate) for window in windows), key=_as_utc, default=candidate)
        if _as_utc(latest) > limit:
            return None
        if all_open(windows, latest):
            return latest
        candidate = latest
