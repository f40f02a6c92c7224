"""The completion estimate: daily caps (what is left today, full caps after each reset), send windows and
sliding windows, against hand-computed finishing times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailstream.core.completion import SourceCapacity, describe, estimate_completion
from mailstream.core.send_window import SendWindow
from mailstream.core.sliding_window import SlidingWindow

BERLIN = ZoneInfo("Europe/Berlin")
ZULU = ZoneInfo("UTC")  # the reset timezone
MONDAY_6 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
OFFICE = SendWindow.parse("08:00", "20:00", "Europe/Berlin")


def test_nothing_queued_is_done_now() -> None:
    done = estimate_completion(0, [SourceCapacity(1000)], MONDAY_6, ZULU)
    assert (done.at, done.phrase, done.sending_days) == (MONDAY_6, "nothing to send", 0)


def test_no_source_never_finishes() -> None:
    done = estimate_completion(5, [], MONDAY_6, ZULU)
    assert done.at is None
    assert "no egress source" in done.phrase


def test_three_caps_of_1000_send_5000_after_the_next_midnight() -> None:
    done = estimate_completion(5000, [SourceCapacity(1000)] * 3, MONDAY_6, ZULU)
    assert done.at == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 3,000 now, the other 2,000 at the reset
    assert done.sending_days == 2
    assert done.phrase == "about 18 hours"


def test_fifty_thousand_at_thirty_thousand_a_day_takes_two_days() -> None:
    done = estimate_completion(50_000, [SourceCapacity(1000)] * 30, MONDAY_6, ZULU)
    assert done.sending_days == 2
    assert done.at == datetime(2026, 11, 24, tzinfo=UTC)


def test_windows_and_reset_timezone_move_the_finish_to_the_next_opening() -> None:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=BERLIN)
    done = estimate_completion(5000, [SourceCapacity(1000, send_window=OFFICE)] * 3, now, BERLIN)
    assert done.at == datetime(2026, 11, 24, 8, 0, tzinfo=BERLIN)
    assert done.phrase == "about 26 hours"


def test_what_is_used_today_is_not_available_again_until_the_reset() -> None:
    sources = [SourceCapacity(1000, used_today=900), SourceCapacity(1000, used_today=1000)]
    assert estimate_completion(100, sources, MONDAY_6, ZULU).at == MONDAY_6
    assert estimate_completion(101, sources, MONDAY_6, ZULU).at == datetime(2026, 11, 24, tzinfo=UTC)


def test_over_used_source_counts_as_zero_not_negative() -> None:
    sources = [SourceCapacity(10, used_today=50), SourceCapacity(10)]
    assert estimate_completion(10, sources, MONDAY_6, ZULU).at == MONDAY_6


def test_sliding_window_spreads_sends_evenly() -> None:
    source = SourceCapacity(None, sliding_window=SlidingWindow(2, timedelta(minutes=30)))
    done = estimate_completion(10, [source], MONDAY_6, ZULU)
    assert done.at is not None
    assert abs((done.at - MONDAY_6) - timedelta(hours=2, minutes=30)) <= timedelta(seconds=1)


def test_sliding_window_inside_send_window_gives_48_a_day() -> None:
    source = SourceCapacity(None, send_window=OFFICE, sliding_window=SlidingWindow(2, timedelta(minutes=30)))
    now = datetime(2026, 11, 23, 8, 0, tzinfo=BERLIN)
    done = estimate_completion(96, [source], now, BERLIN)
    assert done.at is not None
    assert abs(done.at - datetime(2026, 11, 24, 20, 0, tzinfo=BERLIN)) <= timedelta(seconds=1)
    assert done.sending_days == 2


def test_daily_cap_binds_before_the_sliding_window() -> None:
    source = SourceCapacity(10, sliding_window=SlidingWindow(60, timedelta(hours=1)))  # 1 a minute, 10 a day
    done = estimate_completion(15, [source], MONDAY_6, ZULU)
    assert done.at is not None
    assert abs(done.at - datetime(2026, 11, 24, 0, 5, tzinfo=UTC)) <= timedelta(seconds=1)


def test_unlimited_source_sends_everything_when_its_window_opens() -> None:
    done = estimate_completion(
        1_000_000, [SourceCapacity(None, send_window=OFFICE)], datetime(2026, 11, 23, 21, 0, tzinfo=BERLIN), BERLIN
    )
    assert done.at == datetime(2026, 11, 24, 8, 0, tzinfo=BERLIN)


def test_beyond_the_horizon_there_is_no_answer() -> None:
    done = estimate_completion(1000, [SourceCapacity(1)], MONDAY_6, ZULU, horizon=timedelta(days=10))
    assert done.at is None
    assert done.phrase == "not within 10 days at current capacities"


def test_a_window_that_never_opens_within_the_horizon() -> None:
    weekend = SendWindow.parse("08:00", "20:00", "UTC", "Sat")
    done = estimate_completion(
        1, [SourceCapacity(None, send_window=weekend)], MONDAY_6, ZULU, horizon=timedelta(days=3)
    )
    assert done.at is None


@pytest.mark.parametrize(
    ("wait", "phrase"),
    [
        (timedelta(seconds=59), "under a minute"),
        (timedelta(minutes=1), "about 1 minute"),
        (timedelta(minutes=40), "about 40 minutes"),
        (timedelta(minutes=89), "about 89 minutes"),
        (timedelta(minutes=90), "about 2 hours"),
        (timedelta(hours=35), "about 35 hours"),
        (timedelta(hours=36), "about 2 days"),
        (timedelta(days=4, hours=2), "about 4 days"),
    ],
)
def test_describe(wait: timedelta, phrase: str) -> None:
    assert describe(wait) == phrase
