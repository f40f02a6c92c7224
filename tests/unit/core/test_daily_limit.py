"""Daily caps: which local day an instant counts against, when the day resets, and what is left of the cap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.core.daily_limit import DailyUsage, day_of, next_reset, remaining

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY = date(2026, 6, 1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_day_of_is_the_local_date() -> None:
    late = utc(2026, 6, 1, 23, 30)
    assert day_of(late, BERLIN) == date(2026, 6, 2)
    assert day_of(late, NEW_YORK) == date(2026, 6, 1)
    assert day_of(late, ZoneInfo("UTC")) == date(2026, 6, 1)
    assert day_of(late.astimezone(NEW_YORK), BERLIN) == date(2026, 6, 2)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        day_of(datetime(2026, 6, 1), BERLIN)
    with pytest.raises(ValueError, match="naive"):
        next_reset(datetime(2026, 6, 1), BERLIN)


def test_next_reset_is_the_next_local_midnight() -> None:
    assert next_reset(utc(2026, 6, 1, 12), BERLIN) == utc(2026, 6, 1, 22)
    assert next_reset(utc(2026, 6, 1, 22), BERLIN) == utc(2026, 6, 2, 22)  # at midnight: the next one
    assert next_reset(utc(2026, 6, 1, 21, 59), BERLIN) == utc(2026, 6, 1, 22)
    assert next_reset(utc(2026, 6, 1, 12), NEW_YORK) == utc(2026, 6, 2, 4)
    reset = next_reset(utc(2026, 6, 1, 12), BERLIN)
    assert reset.tzinfo is UTC
    assert next_reset(datetime(2026, 6, 1, 9, tzinfo=BERLIN), BERLIN).isoformat() == "2026-06-02T00:00:00+02:00"


def test_next_reset_across_dst() -> None:
    # Berlin: CET (+1) until 2026-03-29 01:00 UTC, CEST (+2) after; back to CET on 2026-10-25 01:00 UTC.
    assert next_reset(utc(2026, 3, 28, 12), BERLIN) == utc(2026, 3, 28, 23)
    assert next_reset(utc(2026, 3, 29, 12), BERLIN) == utc(2026, 3, 29, 22)
    assert next_reset(utc(2026, 10, 24, 12), BERLIN) == utc(2026, 10, 24, 22)
    assert next_reset(utc(2026, 10, 25, 12), BERLIN) == utc(2026, 10, 25, 23)


def test_a_midnight_skipped_by_dst_resets_when_the_clock_jumps() -> None:
    sao_paulo = ZoneInfo("America/Sao_Paulo")  # 2018-11-03 23:59:59 (-03) was followed by 2018-11-04 01:00 (-02)
    reset = next_reset(utc(2018, 11, 3, 12), sao_paulo)
    assert reset == utc(2018, 11, 4, 3)
    assert day_of(reset, sao_paulo) == date(2018, 11, 4)
    assert day_of(reset - timedelta(microseconds=1), sao_paulo) == date(2018, 11, 3)


def test_a_clock_set_back_across_midnight_resets_when_it_reads_midnight_again() -> None:
    moncton = ZoneInfo("America/Moncton")  # 1993-10-31 00:00:59 (-03) was followed by 1993-10-30 23:01 (-04)
    assert day_of(utc(1993, 10, 31, 3), moncton) == date(1993, 10, 31)
    assert next_reset(utc(1993, 10, 31, 3), moncton) == utc(1993, 11, 1, 4)
    back = utc(1993, 10, 31, 3, 15)  # 23:15 on the 30th, the second time round
    assert day_of(back, moncton) == date(1993, 10, 30)
    assert next_reset(back, moncton) == utc(1993, 10, 31, 4)


ZONES = st.sampled_from(
    [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "America/Sao_Paulo",
        "America/Santiago",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "America/Moncton",
    ]
).map(ZoneInfo)


@given(st.datetimes(datetime(1985, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)), ZONES)
def test_the_day_changes_at_the_reset_and_not_before(now: datetime, tz: ZoneInfo) -> None:
    reset = next_reset(now, tz)
    assert now < reset <= now + timedelta(hours=26)
    assert day_of(reset, tz) > day_of(now, tz)
    assert day_of(reset - timedelta(microseconds=1), tz) <= day_of(now, tz)


def test_usage_counts_per_day() -> None:
    usage = DailyUsage()
    assert usage.used_on(MONDAY) == 0
    usage = usage.record(MONDAY).record(MONDAY, 4)
    assert usage == DailyUsage(MONDAY, 5)
    assert usage.used_on(MONDAY) == 5
    tuesday = MONDAY + timedelta(days=1)
    assert usage.used_on(tuesday) == 0
    assert usage.record(tuesday, 2) == DailyUsage(tuesday, 2)
    assert usage.record(MONDAY, 0) == usage


def test_an_earlier_day_counts_against_the_day_held() -> None:
    tuesday = DailyUsage(MONDAY + timedelta(days=1), 7)
    assert tuesday.used_on(MONDAY) == 7  # a clock set back across midnight frees no capacity
    assert tuesday.record(MONDAY, 3) == DailyUsage(MONDAY + timedelta(days=1), 10)


def test_negative_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        DailyUsage(MONDAY, -1)
    with pytest.raises(ValueError, match="negative"):
        DailyUsage().record(MONDAY, -2)


def test_remaining() -> None:
    usage = DailyUsage(MONDAY, 30)
    assert remaining(None, usage, MONDAY) is None
    assert remaining(100, usage, MONDAY) == 70
    assert remaining(30, usage, MONDAY) == 0
    assert remaining(20, usage, MONDAY) == 0  # a lowered limit never goes negative
    assert remaining(100, usage, MONDAY + timedelta(days=1)) == 100
    assert remaining(1, DailyUsage(), MONDAY) == 1


@pytest.mark.parametrize("limit", [0, -5])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        remaining(limit, DailyUsage(), MONDAY)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), max_size=30), st.integers(1, 500))
def test_usage_matches_a_tally_of_the_latest_day(records: list[tuple[int, int]], limit: int) -> None:
    usage, latest, count = DailyUsage(), -1, 0  # the latest day recorded, and all recorded since it began
    for offset, n in records:
        usage = usage.record(MONDAY + timedelta(days=offset), n)
        latest, count = (offset, n) if offset > latest else (latest, count + n)
    for offset in range(4):
        day = MONDAY + timedelta(days=offset)
        expected = count if offset <= latest else 0
        assert usage.used_on(day) == expected
        assert remaining(limit, usage, day) == max(0, limit - expected)
