"""Per-day caps ("at most 5,000 a day") that reset at local midnight in the tenant's or provider's timezone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailstream.core.send_window import first_instant

_MIDNIGHT = time(0, 0)


def _as_utc(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"{now!r} is naive: pass a timezone-aware datetime")
    return now.astimezone(UTC)


def day_of(now: datetime, tz: ZoneInfo) -> date:
    """The local date in `tz` at `now`: the day whose cap an operation at `now` counts against."""
    return _as_utc(now).astimezone(tz).date()


def next_reset(now: datetime, tz: ZoneInfo) -> datetime:
    """The next instant at which the local date moves past `day_of(now)`: local midnight, in the timezone of `now`.

    A midnight that a DST jump skips (some zones change at 00:00) means the first instant after it; when the clock
    has been set back across midnight, the date moves on again when it reads midnight the second time.
    """
    utc = _as_utc(now)
    day = day_of(utc, tz) + timedelta(days=1)
    reset = first_instant(day, _MIDNIGHT, tz)
    if reset <= utc:
        reset = datetime.combine(day, _MIDNIGHT, tz).replace(fold=1).astimezone(UTC)
    return reset.astimezone(now.tzinfo)


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """How much of the cap `day` has used; a new day starts from zero, so no reset event is needed.

    Only the latest day is held. A day before it (the clock was set back across midnight) reads as the
    latest day and is counted against it: setting the clock back never frees capacity.
    """

    day: date | None = None
    used: int = 0

    def __post_init__(self) -> None:
        if self.used < 0:
            raise ValueError(f"daily usage cannot be negative, not {self.used}")

    def used_on(self, day: date) -> int:
        return 0 if self.day is None or day > self.day else self.used

    def record(self, day: date, n: int = 1) -> DailyUsage:
        """Count `n` more on `day` (on the day held, if `day` is before it)."""
        if n < 0:
            raise ValueError(f"cannot record a negative usage {n}")
        return DailyUsage(day if self.day is None or day > self.day else self.day, self.used_on(day) + n)


def remaining(limit: int | None, usage: DailyUsage, day: date) -> int | None:
    """What is left of `limit` on `day` (never negative); None when there is no limit."""
    if limit is None:
        return None
    if limit < 1:
        raise ValueError(f"a daily limit must be at least 1 (or None for no limit), not {limit}")
    return max(0, limit - usage.used_on(day))
