"""KumoMTA throttle specs ("100/h", "local:6/m,max_burst=1") and the GCRA that enforces them, as pure functions.

The GCRA keeps a single instant per throttle (the theoretical arrival time), so its state is cheap to store in an
event and replays to the same decisions. Instants are kept in UTC: arithmetic on a zone-aware wall clock would
stretch or shrink an interval across a DST change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_CANONICAL = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_LOCAL = re.compile(r"local\s*:", re.IGNORECASE)
_QUANTITY = re.compile(r"\d+(?:[,_]\d+)*")
_PERIOD = re.compile(r"(\d+(?:_\d+)*)?\s*([a-z]+)", re.IGNORECASE)
_MAX_BURST = re.compile(r"max_burst\s*=\s*(\d+(?:_\d+)*)", re.IGNORECASE)
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ThrottleSpec:
    """`limit` operations per `period`; `max_burst` caps how many may go at once (default: all `limit`)."""

    limit: int
    period: timedelta
    max_burst: int | None = None
    local: bool = False

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"throttle limit must be at least 1, not {self.limit}")
        if self.period <= timedelta(0) or self.period % _SECOND:
            raise ValueError(f"throttle period must be a positive whole number of seconds, not {self.period}")
        if self.period < self.limit * _MICROSECOND:
            raise ValueError(f"throttle {self.limit} per {self.period} is more than one per microsecond")
        if self.max_burst is not None and self.max_burst < 1:
            raise ValueError(f"throttle max_burst must be at least 1, not {self.max_burst}")

    @classmethod
    def parse(cls, text: str) -> ThrottleSpec:
        """Parse `[local:]QUANTITY/PERIOD[,max_burst=N]`; ValueError quotes the text and says what is wrong."""
        body = text.strip()
        local = _LOCAL.match(body)
        if local is not None:
            body = body[local.end() :]
        quantity, slash, rest = body.partition("/")
        if not slash:
            raise ValueError(f"throttle {text!r} has no '/': expected QUANTITY/PERIOD such as '100/h'")
        period_text, comma, option = rest.partition(",")
        quantity = quantity.strip()
        if _QUANTITY.fullmatch(quantity) is None:
            raise ValueError(f"throttle {text!r}: quantity {quantity!r} is not a whole number")
        limit = int(quantity.replace(",", "").replace("_", ""))
        if limit == 0:
            raise ValueError(f"throttle {text!r}: quantity must be at least 1")
        period = _parse_period(text, period_text.strip())
        max_burst = _parse_max_burst(text, option.strip()) if comma else None
        try:
            return cls(limit, period, max_burst, local is not None)
        except ValueError as error:
            raise ValueError(f"throttle {text!r}: {error}") from None

    @property
    def burst(self) -> int:
        """How many operations may go back to back after a quiet spell."""
        return self.limit if self.max_burst is None else self.max_burst

    @property
    def interval(self) -> timedelta:
        """The emission interval: the steady-state spacing between operations.

        Rounded to a microsecond; the GCRA steps by whole multiples of this rounded value, so a burst is exact and
        the long-run rate is off by at most half a microsecond per operation.
        """
        return self.period / self.limit

    def __str__(self) -> str:
        seconds = self.period // _SECOND
        unit, size = next((u, s) for u, s in _CANONICAL if seconds % s == 0)
        count = seconds // size
        text = f"{self.limit}/{unit if count == 1 else f'{count}{unit}'}"
        if self.max_burst is not None:
            text += f",max_burst={self.max_burst}"
        return f"local:{text}" if self.local else text


def _parse_period(text: str, period: str) -> timedelta:
    match = _PERIOD.fullmatch(period)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"throttle {text!r}: period {period!r} is not [N]s|m|h|d (or sec, min, hr, day, ...)")
    count = int(match.group(1).replace("_", "")) if match.group(1) else 1
    if count == 0:
        raise ValueError(f"throttle {text!r}: period {period!r} is zero")
    try:
        return timedelta(seconds=count * _UNITS[match.group(2).lower()])
    except OverflowError:
        raise ValueError(f"throttle {text!r}: period {period!r} is too long") from None


def _parse_max_burst(text: str, option: str) -> int:
    match = _MAX_BURST.fullmatch(option)
    if match is None:
        raise ValueError(f"throttle {text!r}: option {option!r} is not max_burst=N")
    burst = int(match.group(1).replace("_", ""))
    if burst == 0:
        raise ValueError(f"throttle {text!r}: max_burst must be at least 1")
    return burst


@dataclass(frozen=True, slots=True)
class Gcra:
    """GCRA state: the theoretical arrival time (UTC) of the next operation; None before the first."""

    tat: datetime | None = None


def _as_utc(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"{now!r} is naive: pass a timezone-aware datetime")
    return now.astimezone(UTC)


def _check_quantity(spec: ThrottleSpec, quantity: int) -> None:
    if not 1 <= quantity <= spec.burst:
        raise ValueError(
            f"quantity {quantity} is outside 1..{spec.burst} (the burst of {spec}): "
            "more than the burst could never be admitted"
        )


def _allow_at(spec: ThrottleSpec, state: Gcra, now: datetime, quantity: int) -> tuple[datetime, datetime]:
    """(tat, the earliest instant `quantity` fits) with `now` in UTC: tat − interval × (burst − quantity)."""
    tat = now if state.tat is None else max(state.tat.astimezone(UTC), now)
    return tat, tat - spec.interval * (spec.burst - quantity)


def admit(spec: ThrottleSpec, state: Gcra, now: datetime, quantity: int = 1) -> tuple[bool, Gcra, timedelta]:
    """(admitted, new state, retry_after). Refused leaves the state as it was; retry_after is then > 0."""
    _check_quantity(spec, quantity)
    utc = _as_utc(now)
    tat, allow_at = _allow_at(spec, state, utc, quantity)
    if utc < allow_at:
        return False, state, allow_at - utc
    return True, Gcra(tat + spec.interval * quantity), timedelta(0)


def next_admit_at(spec: ThrottleSpec, state: Gcra, now: datetime, quantity: int = 1) -> datetime:
    """The earliest instant ≥ now at which `quantity` would be admitted, in the timezone of `now`."""
    _check_quantity(spec, quantity)
    utc = _as_utc(now)
    _, allow_at = _allow_at(spec, state, utc, quantity)
    return now if allow_at <= utc else allow_at.astimezone(now.tzinfo)
