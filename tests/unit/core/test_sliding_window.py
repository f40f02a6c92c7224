"""Sliding-window limits: "N per M minutes" over the instants of recent sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.core.sliding_window import SlidingWindow, admit, next_free

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)
TWO_PER_HALF_HOUR = SlidingWindow(2, 30 * MIN)


def test_two_per_thirty_minutes() -> None:
    ok, sent = admit(TWO_PER_HALF_HOUR, (), T0)
    assert ok
    assert sent == (T0,)
    ok, sent = admit(TWO_PER_HALF_HOUR, sent, T0 + 10 * MIN)
    assert ok
    assert sent == (T0, T0 + 10 * MIN)
    assert admit(TWO_PER_HALF_HOUR, sent, T0 + 20 * MIN) == (False, sent)
    assert next_free(TWO_PER_HALF_HOUR, sent, T0 + 20 * MIN) == T0 + 30 * MIN
    # A send stops counting exactly one span after it happened.
    assert admit(TWO_PER_HALF_HOUR, sent, T0 + 30 * MIN - timedelta(microseconds=1))[0] is False
    assert admit(TWO_PER_HALF_HOUR, sent, T0 + 30 * MIN) == (True, (T0 + 10 * MIN, T0 + 30 * MIN))


def test_old_sends_are_pruned_even_when_refused() -> None:
    window = SlidingWindow(1, 30 * MIN)
    sent = (T0 - 2 * 30 * MIN, T0 - 30 * MIN, T0 + MIN)
    assert admit(window, sent, T0 + 5 * MIN) == (False, (T0 + MIN,))
    assert admit(window, (T0 - 40 * MIN,), T0) == (True, (T0,))


def test_state_is_kept_sorted_and_sends_are_recorded_in_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    window = SlidingWindow(5, 30 * MIN)
    late, early = T0 + 5 * MIN, T0 + MIN
    ok, sent = admit(window, (late.astimezone(berlin), early), (T0 + 3 * MIN).astimezone(berlin))
    assert ok
    assert sent == (early, T0 + 3 * MIN, late)
    assert sent[1].tzinfo is UTC


def test_next_free() -> None:
    sent = (T0, T0 + 10 * MIN)
    now = T0 + 35 * MIN
    assert next_free(TWO_PER_HALF_HOUR, sent, now) is now
    assert next_free(TWO_PER_HALF_HOUR, (T0,), T0) == T0
    berlin = ZoneInfo("Europe/Berlin")
    free = next_free(TWO_PER_HALF_HOUR, sent, (T0 + 20 * MIN).astimezone(berlin))
    assert free.tzinfo is berlin
    assert free.isoformat() == "2026-01-01T01:30:00+01:00"


def test_next_free_after_the_limit_was_lowered() -> None:
    sent = (T0, T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN)
    # Limit 2 with four in the window: three must leave before there is room, the third leaves at 2 + 30 minutes.
    assert next_free(SlidingWindow(2, 30 * MIN), sent, T0 + 4 * MIN) == T0 + 32 * MIN
    assert admit(SlidingWindow(2, 30 * MIN), sent, T0 + 32 * MIN)[0]
    assert not admit(SlidingWindow(2, 30 * MIN), sent, T0 + 31 * MIN)[0]


@pytest.mark.parametrize(
    ("limit", "span", "why"),
    [
        (0, MIN, "limit"),
        (-1, MIN, "limit"),
        (1, timedelta(0), "span"),
        (1, -MIN, "span"),
    ],
)
def test_bad_windows_are_refused(limit: int, span: timedelta, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        SlidingWindow(limit, span)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        admit(TWO_PER_HALF_HOUR, (), datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        next_free(TWO_PER_HALF_HOUR, (datetime(2026, 1, 1),), T0)


@given(
    st.integers(1, 5),
    st.integers(1, 120).map(lambda m: m * MIN),
    st.lists(st.integers(0, 40 * 60).map(lambda s: timedelta(seconds=s)), min_size=1, max_size=60),
)
def test_admits_exactly_when_fewer_than_limit_sent_in_the_last_span(
    limit: int, span: timedelta, gaps: list[timedelta]
) -> None:
    window = SlidingWindow(limit, span)
    sent: tuple[datetime, ...] = ()
    history: list[datetime] = []
    now = T0
    for gap in gaps:
        now += gap
        recent = [s for s in history if now - span < s <= now]
        free = next_free(window, sent, now)
        ok, sent = admit(window, sent, now)
        assert ok is (len(recent) < limit)
        assert (free == now) is ok
        if not ok:
            assert free > now
            assert admit(window, sent, free)[0]
            assert not admit(window, sent, free - timedelta(microseconds=1))[0]
        else:
            history.append(now)
        assert len(sent) <= limit
        assert list(sent) == sorted(sent)
