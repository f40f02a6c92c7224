"""What an operator types, parsed (pure): comma lists, times given as RFC 3339 or as "how long ago"."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def split_list(values: Iterable[str] | None) -> list[str]:
    """`--status a,b --status c` -> [a, b, c]: repeated or comma-separated, blanks dropped."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def parse_ago(text: str) -> timedelta | None:
    """ "90s", "15m", "2h", "1d12h", "1w" -> the span; None when `text` is not such a span."""
    text = text.strip().lower()
    if not text or _AGO.sub("", text):
        return None
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _AGO.findall(text)))


def parse_time(text: str, now: datetime) -> datetime:
    """An RFC 3339 time (UTC when it names no zone), "now", or a span meaning that long before `now`."""
    if text.strip().lower() == "now":
        return now
    span = parse_ago(text)
    if span is not None:
        return now - span
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a time (2026-12-01T08:00:00Z) nor a span (2h, 1d)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def time_param(text: str | None, now: datetime) -> str | None:
    return None if text is None else parse_time(text, now).isoformat()


def parse_offsets(values: Iterable[str], partitions: Iterable[int]) -> dict[int, int]:
    """`--offset N` (every partition from N) and `--offset P:N` (partition P from N) -> {partition: offset};
    a partition no value names is not read."""
    known = list(partitions)
    found: dict[int, int] = {}
    for value in split_list(values):
        part, sep, offset = value.rpartition(":")
        if not offset.isdigit() or (sep and not part.isdigit()):
            raise ValueError(f"{value!r} is not OFFSET or PARTITION:OFFSET")
        if sep and int(part) not in known:
            raise ValueError(f"mail.events has no partition {part}")
        found |= {p: int(offset) for p in ([int(part)] if sep else known)}
    return found
