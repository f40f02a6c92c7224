"""Send-time windows: parsing, membership, next opening and closing, across DST changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.core.send_window import SendWindow, all_open, first_instant, next_open_all

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
US = timedelta(microseconds=1)


def berlin(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
    *,
    fold: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=BERLIN, fold=fold)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


OFFICE = SendWindow.parse("08:00", "18:00", "Europe/Berlin", "Mon-Fri")
NIGHT_MONDAY = SendWindow.parse("22:00", "06:00", "Europe/Berlin", "Mon")


@pytest.mark.parametrize(
    ("weekdays", "days"),
    [
        (None, {0, 1, 2, 3, 4, 5, 6}),
        ("Mon,Wed", {0, 2}),
        (" mon , WED ", {0, 2}),
        ("Mon-Fri", {0, 1, 2, 3, 4}),
        ("Fri-Mon", {4, 5, 6, 0}),
        ("sun", {6}),
        ("Tuesday,thursday", {1, 3}),
        (["mon", "tue"], {0, 1}),
        (["Sat-Sun", "Wed"], {5, 6, 2}),
        (("Mon,Tue", "Fri"), {0, 1, 4}),
    ],
)
def test_parse_weekdays(weekdays: str | Sequence[str] | None, days: set[int]) -> None:
    assert SendWindow.parse("08:00", "18:00", weekdays=weekdays).weekdays == frozenset(days)


def test_parse_times_and_zone() -> None:
    window = SendWindow.parse(" 8:05", "17:30 ", "America/New_York")
    assert window == SendWindow(time(8, 5), time(17, 30), NEW_YORK)
    assert SendWindow.parse("08:00", "18:00").tz == ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("args", "bad"),
    [
        (("8", "18:00"), "'8'"),
        (("08:00", "24:00"), "'24:00'"),
        (("08:60", "18:00"), "'08:60'"),
        (("08:00", "6pm"), "'6pm'"),
        (("08:00", "18:00", "Mars/Olympus_Mons"), "'Mars/Olympus_Mons'"),
        (("08:00", "18:00", "Europe"), "'Europe'"),
        (("08:00", "18:00", ""), "''"),
        (("08:00", "18:00", "../etc/passwd"), "'../etc/passwd'"),
        (("08:00", "18:00", "UTC", "Mon,Funday"), "'Funday'"),
        (("08:00", "18:00", "UTC", "Mon-"), "''"),
        (("08:00", "18:00", "UTC", ["mon", "xyz"]), "'xyz'"),
        (("09:00", "09:00"), "09:00"),
        (("08:00", "18:00", "UTC", []), "[]"),
    ],
)
def test_bad_values_are_named(args: tuple[str, ...], bad: str) -> None:
    with pytest.raises(ValueError, match="send window") as info:
        SendWindow.parse(*args)
    assert bad in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"start": time(8, tzinfo=UTC), "end": time(9)}, "tzinfo"),
        ({"start": time(8), "end": time(9), "weekdays": frozenset({7})}, "subset of 0..6"),
        ({"start": time(8), "end": time(9), "weekdays": frozenset()}, "non-empty"),
    ],
)
def test_constructor_checks(kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        SendWindow(tz=BERLIN, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (berlin(2026, 6, 1, 7, 59, 59), False),
        (berlin(2026, 6, 1, 8), True),
        (berlin(2026, 6, 1, 17, 59, 59, 999999), True),
        (berlin(2026, 6, 1, 18), False),
        (berlin(2026, 6, 5, 12), True),  # Friday
        (berlin(2026, 6, 6, 12), False),  # Saturday
        (utc(2026, 6, 1, 6), True),  # 08:00 CEST
        (utc(2026, 6, 1, 5, 59), False),
        (datetime(2026, 6, 1, 2, tzinfo=NEW_YORK), True),  # 08:00 CEST
    ],
)
def test_contains_office_hours(at: datetime, inside: bool) -> None:
    assert OFFICE.contains(at) is inside


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (berlin(2026, 6, 1, 21, 59), False),
        (berlin(2026, 6, 1, 22), True),  # Monday evening
        (berlin(2026, 6, 1, 23, 59), True),
        (berlin(2026, 6, 2, 0, 0), True),  # Tuesday morning belongs to Monday's window
        (berlin(2026, 6, 2, 5, 59), True),
        (berlin(2026, 6, 2, 6), False),
        (berlin(2026, 6, 2, 22, 30), False),  # Tuesday evening: not a Monday
        (berlin(2026, 6, 1, 5), False),  # Monday morning belongs to Sunday's window
    ],
)
def test_an_overnight_window_belongs_to_the_day_it_starts(at: datetime, inside: bool) -> None:
    assert NIGHT_MONDAY.contains(at) is inside


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        OFFICE.contains(datetime(2026, 6, 1, 12))
    with pytest.raises(ValueError, match="naive"):
        next_open_all([OFFICE], datetime(2026, 6, 1, 12))


def test_next_open_is_now_when_open() -> None:
    now = berlin(2026, 6, 1, 12)
    assert OFFICE.next_open(now) is now


def test_next_open_keeps_the_timezone_of_now() -> None:
    saturday = utc(2026, 6, 6, 12)
    opens = OFFICE.next_open(saturday)
    assert opens == utc(2026, 6, 8, 6)  # Monday 08:00 CEST
    assert opens.tzinfo is UTC
    in_new_york = OFFICE.next_open(saturday.astimezone(NEW_YORK))
    assert in_new_york.isoformat() == "2026-06-08T02:00:00-04:00"
    assert OFFICE.next_open(berlin(2026, 6, 1, 18)).isoformat() == "2026-06-02T08:00:00+02:00"
    assert OFFICE.next_open(berlin(2026, 6, 1, 7)).isoformat() == "2026-06-01T08:00:00+02:00"


def test_closes_at() -> None:
    assert OFFICE.closes_at(berlin(2026, 6, 1, 12)) == berlin(2026, 6, 1, 18)
    assert OFFICE.closes_at(berlin(2026, 6, 1, 18)) is None
    assert OFFICE.closes_at(berlin(2026, 6, 6, 12)) is None
    assert NIGHT_MONDAY.closes_at(berlin(2026, 6, 1, 23)) == berlin(2026, 6, 2, 6)
    closes = NIGHT_MONDAY.closes_at(utc(2026, 6, 1, 21))
    assert closes is not None
    assert closes.tzinfo is UTC
    assert closes == utc(2026, 6, 2, 4)


def test_every_day_overnight_window_runs_back_to_back() -> None:
    window = SendWindow.parse("22:00", "06:00", "UTC")
    assert window.contains(utc(2026, 6, 3, 3))
    assert window.closes_at(utc(2026, 6, 3, 3)) == utc(2026, 6, 3, 6)
    assert window.next_open(utc(2026, 6, 3, 6)) == utc(2026, 6, 3, 22)


# DST: Europe/Berlin jumps from 02:00 to 03:00 on 2026-03-29 (01:00 UTC) and from 03:00 back to 02:00 on
# 2026-10-25 (01:00 UTC).


def test_first_instant() -> None:
    assert first_instant(date(2026, 6, 1), time(8), BERLIN) == utc(2026, 6, 1, 6)
    assert first_instant(date(2026, 3, 29), time(2, 30), BERLIN) == utc(2026, 3, 29, 1)  # skipped: 03:00 CEST
    assert first_instant(date(2026, 10, 25), time(2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)  # first of two
    # Samoa skipped 30 December 2011 entirely: it went from the 29th 23:59:59 (-10) to the 31st 00:00 (+14).
    assert first_instant(date(2011, 12, 30), time(12), ZoneInfo("Pacific/Apia")) == utc(2011, 12, 30, 10)
    assert first_instant(date(2026, 3, 29), time(2, 30), BERLIN).tzinfo is UTC


def test_office_hours_follow_local_time_across_dst() -> None:
    daily = SendWindow.parse("08:00", "18:00", "Europe/Berlin")
    assert daily.next_open(utc(2026, 3, 28, 20)) == utc(2026, 3, 29, 6)  # 08:00 CEST, not 07:00 UTC
    assert daily.closes_at(utc(2026, 3, 28, 12)) == utc(2026, 3, 28, 17)  # 18:00 CET
    assert daily.closes_at(utc(2026, 3, 29, 12)) == utc(2026, 3, 29, 16)  # 18:00 CEST
    assert daily.next_open(utc(2026, 10, 24, 20)) == utc(2026, 10, 25, 7)  # 08:00 CET


def test_a_start_skipped_by_dst_opens_when_the_clock_jumps() -> None:
    window = SendWindow.parse("02:30", "04:00", "Europe/Berlin")
    opens = window.next_open(berlin(2026, 3, 29, 1))
    assert opens == utc(2026, 3, 29, 1)
    assert opens.isoformat() == "2026-03-29T03:00:00+02:00"
    # Subtract in UTC: arithmetic on a Berlin datetime is wall-clock arithmetic and would land in the skipped hour.
    assert not window.contains(opens.astimezone(UTC) - US)
    assert window.contains(opens)
    assert window.closes_at(opens) == berlin(2026, 3, 29, 4)


def test_a_window_inside_the_skipped_hour_does_not_open_that_day() -> None:
    window = SendWindow.parse("02:10", "02:40", "Europe/Berlin")
    assert not window.contains(utc(2026, 3, 29, 1))
    assert window.next_open(utc(2026, 3, 28, 23)) == berlin(2026, 3, 30, 2, 10)


def test_a_repeated_hour_closes_at_the_first_occurrence_of_the_end() -> None:
    window = SendWindow.parse("02:00", "02:45", "Europe/Berlin")
    assert window.next_open(utc(2026, 10, 24, 23)) == utc(2026, 10, 25, 0)  # 02:00 CEST
    assert window.closes_at(utc(2026, 10, 25, 0)) == utc(2026, 10, 25, 0, 45)  # 02:45 CEST
    repeated = berlin(2026, 10, 25, 2, 15, fold=1)  # 02:15 CET, the second time round
    assert repeated.astimezone(UTC) == utc(2026, 10, 25, 1, 15)  # PEP 495: == across zones is False on fold=1
    assert not window.contains(repeated)
    assert window.next_open(repeated) == utc(2026, 10, 26, 1)  # 02:00 CET next day


def test_an_overnight_window_over_the_autumn_change_lasts_an_hour_longer() -> None:
    window = SendWindow.parse("22:00", "06:00", "Europe/Berlin", "Sat")
    opens = window.next_open(utc(2026, 10, 24, 12))
    closes = window.closes_at(opens)
    assert opens == utc(2026, 10, 24, 20)
    assert closes == utc(2026, 10, 25, 5)
    assert closes - opens == timedelta(hours=9)


def test_spans_that_touch_across_a_dst_jump_close_as_one() -> None:
    # 02:45 → 02:30 next day: on 29 March both 02:30 and 02:45 are skipped, so Saturday's span closes at 03:00 CEST
    # exactly when Sunday's opens.
    window = SendWindow.parse("02:45", "02:30", "Europe/Berlin")
    assert window.contains(utc(2026, 3, 29, 1))
    assert window.closes_at(utc(2026, 3, 28, 12)) == berlin(2026, 3, 30, 2, 30)


def test_a_midnight_skipped_by_dst() -> None:
    # São Paulo went from 2018-11-03 23:59:59 (-03) to 2018-11-04 01:00 (-02).
    window = SendWindow.parse("00:00", "06:00", "America/Sao_Paulo")
    assert window.next_open(utc(2018, 11, 3, 12)) == utc(2018, 11, 4, 3)  # 01:00 -02
    assert window.contains(utc(2018, 11, 4, 3))
    assert not window.contains(utc(2018, 11, 4, 3) - US)


def test_all_open() -> None:
    new_york = SendWindow.parse("09:00", "17:00", "America/New_York", "Mon-Fri")
    assert all_open([], utc(2026, 6, 6, 3))
    assert all_open([OFFICE, new_york], utc(2026, 6, 1, 13, 30))
    assert not all_open([OFFICE, new_york], utc(2026, 6, 1, 12))
    assert not all_open([OFFICE, new_york], utc(2026, 6, 1, 16))


def test_next_open_all() -> None:
    new_york = SendWindow.parse("09:00", "17:00", "America/New_York", "Mon-Fri")
    start = utc(2026, 6, 1, 6)  # Berlin open, New York not yet
    assert next_open_all([OFFICE, new_york], start) == utc(2026, 6, 1, 13)  # 15:00 CEST, 09:00 EDT
    friday_late = utc(2026, 6, 5, 16, 30)  # Berlin closed for the weekend, New York open
    assert next_open_all([OFFICE, new_york], friday_late) == utc(2026, 6, 8, 13)
    now = utc(2026, 6, 1, 14)
    assert next_open_all([OFFICE, new_york], now) is now
    assert next_open_all([], now) is now
    in_berlin = next_open_all([OFFICE, new_york], start.astimezone(BERLIN))
    assert in_berlin is not None
    assert in_berlin.isoformat() == "2026-06-01T15:00:00+02:00"


def test_next_open_all_gives_up_past_the_horizon() -> None:
    early = SendWindow.parse("08:00", "09:00", "UTC")
    late = SendWindow.parse("10:00", "11:00", "UTC")
    assert next_open_all([early, late], utc(2026, 6, 1)) is None
    sundays = SendWindow.parse("10:00", "11:00", "UTC", "Sun")
    monday = utc(2026, 6, 1)
    assert next_open_all([sundays, late], monday) == utc(2026, 6, 7, 10)
    assert next_open_all([sundays, late], monday, horizon=timedelta(days=3)) is None
    assert next_open_all([sundays, late], monday, horizon=timedelta(days=6, hours=10)) == utc(2026, 6, 7, 10)


ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Apia",
    "America/Moncton",
]
CHANGES = [
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 4, 4, 15),
    utc(2026, 10, 3, 15, 30),
    utc(2026, 4, 5, 3),
    utc(2026, 9, 6, 4),
    utc(2018, 11, 4, 3),
    utc(2011, 12, 30, 10),
    utc(1993, 10, 31, 3, 1),
]

minutes = st.integers(0, 24 * 60 - 1)
windows = st.builds(
    lambda span, zone, days: SendWindow(
        time(span[0] // 60, span[0] % 60), time(span[1] // 60, span[1] % 60), ZoneInfo(zone), frozenset(days)
    ),
    st.tuples(minutes, minutes).filter(lambda span: span[0] != span[1]),
    st.sampled_from(ZONES),
    st.sets(st.integers(0, 6), min_size=1),
)
near_changes = st.builds(
    lambda change, offset: change + timedelta(microseconds=offset),
    st.sampled_from(CHANGES),
    st.integers(-3 * 86_400 * 10**6, 3 * 86_400 * 10**6),
)
anytime = st.datetimes(datetime(1990, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC))
instants = near_changes | anytime


def _between(a: datetime, b: datetime, n: int = 12) -> list[datetime]:
    """n instants from a on, evenly spread and all before b (floor division: rounding could reach b)."""
    return [a + (b - a) * k // n for k in range(n)]


@given(windows, instants)
def test_next_open_is_the_first_open_instant(window: SendWindow, t: datetime) -> None:
    opens = window.next_open(t)
    assert opens >= t
    assert window.contains(opens)
    if opens > t:
        for sample in [*_between(t, opens), opens - US]:
            assert not window.contains(sample)
        assert window.closes_at(t) is None


@given(windows, instants)
def test_closes_at_is_the_end_of_the_open_stretch(window: SendWindow, t: datetime) -> None:
    closes = window.closes_at(t)
    if not window.contains(t):
        assert closes is None
        return
    assert closes is not None
    assert closes > t
    assert not window.contains(closes)
    for sample in [*_between(t, closes), closes - US]:
        assert window.contains(sample)
    assert closes - t <= timedelta(hours=26)


FIXED = ["UTC", "Asia/Kolkata", "Asia/Tokyo", "Etc/GMT+5"]


@given(windows, st.sampled_from(FIXED), anytime)
def test_contains_matches_the_wall_clock_where_there_is_no_dst(window: SendWindow, zone: str, t: datetime) -> None:
    window = SendWindow(window.start, window.end, ZoneInfo(zone), window.weekdays)
    local = t.astimezone(window.tz)
    now = local.time()
    if window.start < window.end:
        expected = local.weekday() in window.weekdays and window.start <= now < window.end
    else:
        expected = (local.weekday() in window.weekdays and now >= window.start) or (
            (local - timedelta(days=1)).weekday() in window.weekdays and now < window.end
        )
    assert window.contains(t) is expected


@given(st.lists(windows, min_size=1, max_size=3), instants)
def test_next_open_all_is_the_first_common_instant(group: list[SendWindow], t: datetime) -> None:
    found = next_open_all(group, t)
    if found is None:
        for sample in _between(t, t + timedelta(days=8), 200):
            assert not all_open(group, sample)
        return
    assert t <= found <= t + timedelta(days=8)
    assert all_open(group, found)
    if found > t:
        for sample in [*_between(t, found, 40), found - US]:
            assert not all_open(group, sample)
