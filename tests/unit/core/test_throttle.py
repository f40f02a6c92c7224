"""Throttle specs as KumoMTA writes them, and the GCRA that enforces them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.core.throttle import Gcra, ThrottleSpec, admit, next_admit_at

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("text", "spec", "canonical"),
    [
        ("100/h", ThrottleSpec(100, timedelta(hours=1)), "100/h"),
        ("1,000/hr", ThrottleSpec(1000, timedelta(hours=1)), "1000/h"),
        ("10_000/d", ThrottleSpec(10000, timedelta(days=1)), "10000/d"),
        ("20/30minute", ThrottleSpec(20, timedelta(minutes=30)), "20/30m"),
        ("2/30min", ThrottleSpec(2, timedelta(minutes=30)), "2/30m"),
        ("5/sec", ThrottleSpec(5, S), "5/s"),
        ("5/90seconds", ThrottleSpec(5, 90 * S), "5/90s"),
        ("3/120minutes", ThrottleSpec(3, timedelta(hours=2)), "3/2h"),
        ("7/48hours", ThrottleSpec(7, timedelta(days=2)), "7/2d"),
        ("1/days", ThrottleSpec(1, timedelta(days=1)), "1/d"),
        ("local:6/m,max_burst=1", ThrottleSpec(6, timedelta(minutes=1), 1, local=True), "local:6/m,max_burst=1"),
        ("  LOCAL : 5 / 2 H , max_burst = 3 ", ThrottleSpec(5, timedelta(hours=2), 3, True), "local:5/2h,max_burst=3"),
        ("50/minute,max_burst=1_000", ThrottleSpec(50, timedelta(minutes=1), 1000), "50/m,max_burst=1000"),
    ],
)
def test_parse_and_format(text: str, spec: ThrottleSpec, canonical: str) -> None:
    assert ThrottleSpec.parse(text) == spec
    assert str(spec) == canonical


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "no '/'"),
        ("100", "no '/'"),
        ("local:", "no '/'"),
        ("abc/h", "not a whole number"),
        ("-5/h", "not a whole number"),
        ("1.5/h", "not a whole number"),
        ("1,,000/h", "not a whole number"),
        ("/h", "not a whole number"),
        ("0/h", "at least 1"),
        ("0,000/h", "at least 1"),
        ("10/", "is not"),
        ("10/fortnight", "is not"),
        ("10/2", "is not"),
        ("10/0h", "is zero"),
        ("10/99999999999999d", "too long"),
        ("10/h,burst=3", "not max_burst=N"),
        ("10/h,max_burst=x", "not max_burst=N"),
        ("10/h,max_burst=3,max_burst=4", "not max_burst=N"),
        ("10/h,max_burst=0", "max_burst must be at least 1"),
        ("2,000,000/s", "more than one per microsecond"),
    ],
)
def test_bad_specs_are_refused_with_the_text_quoted(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))) as info:
        ThrottleSpec.parse(bad)
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"limit": 0, "period": S}, "limit"),
        ({"limit": 1, "period": timedelta(0)}, "period"),
        ({"limit": 1, "period": -S}, "period"),
        ({"limit": 1, "period": 1.5 * S}, "whole number of seconds"),
        ({"limit": 1, "period": S, "max_burst": 0}, "max_burst"),
        ({"limit": 1_000_001, "period": S}, "more than one per microsecond"),
    ],
)
def test_constructor_refuses_what_cannot_be_written(kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        ThrottleSpec(**kwargs)  # type: ignore[arg-type]


def test_burst_and_interval() -> None:
    assert ThrottleSpec.parse("3/s").interval == timedelta(microseconds=333333)
    assert ThrottleSpec.parse("100/h").burst == 100
    assert ThrottleSpec.parse("100/h").interval == timedelta(seconds=36)
    assert ThrottleSpec.parse("6/m,max_burst=1").burst == 1
    assert ThrottleSpec.parse("6/m,max_burst=1").interval == timedelta(seconds=10)
    assert ThrottleSpec.parse("10/m,max_burst=50").burst == 50


specs = st.integers(1, 10**9).flatmap(
    lambda seconds: st.builds(
        ThrottleSpec,
        limit=st.integers(1, seconds * 10**6),
        period=st.just(seconds * S),
        max_burst=st.none() | st.integers(1, 10**12),
        local=st.booleans(),
    )
)


@given(specs)
def test_format_round_trips(spec: ThrottleSpec) -> None:
    assert ThrottleSpec.parse(str(spec)) == spec


def _hammer(spec: ThrottleSpec, every: timedelta, tries: int) -> list[timedelta]:
    """Offsets from T0 at which a caller trying `tries` times, every `every`, is admitted."""
    state, admitted = Gcra(), []
    for n in range(tries):
        ok, state, _ = admit(spec, state, T0 + n * every)
        if ok:
            admitted.append(n * every)
    return admitted


def test_max_burst_one_spaces_sends_by_the_interval() -> None:
    spec = ThrottleSpec.parse("6/m,max_burst=1")
    assert _hammer(spec, S, 60) == [n * 10 * S for n in range(6)]
    ok, state, _ = admit(spec, Gcra(), T0)
    assert ok
    assert state == Gcra(T0 + 10 * S)
    assert admit(spec, state, T0 + 4 * S) == (False, state, 6 * S)


def test_default_burst_lets_the_whole_limit_go_at_once_then_one_per_interval() -> None:
    spec = ThrottleSpec.parse("100/h")
    state = Gcra()
    for _ in range(100):
        ok, state, retry = admit(spec, state, T0)
        assert ok
        assert retry == timedelta(0)
    assert state == Gcra(T0 + timedelta(hours=1))
    assert admit(spec, state, T0) == (False, state, 36 * S)
    assert admit(spec, state, T0 + 35 * S) == (False, state, S)
    ok, state, _ = admit(spec, state, T0 + 36 * S)
    assert ok
    assert admit(spec, state, T0 + 36 * S) == (False, state, 36 * S)


def test_a_quiet_spell_refills_the_burst_but_no_more() -> None:
    spec = ThrottleSpec.parse("10/m,max_burst=3")  # interval 6 s
    state = Gcra()
    for _ in range(3):
        state = admit(spec, state, T0)[1]
    later = T0 + timedelta(hours=5)
    for _ in range(3):
        ok, state, _ = admit(spec, state, later)
        assert ok
    assert admit(spec, state, later) == (False, state, 6 * S)


def test_a_quantity_takes_that_many_intervals() -> None:
    spec = ThrottleSpec.parse("10/m")  # interval 6 s, burst 10
    ok, state, _ = admit(spec, Gcra(), T0, quantity=4)
    assert ok
    assert state == Gcra(T0 + 24 * S)
    # 7 more would need the tat to be within 3 intervals of now: it is 4 ahead, so wait one interval.
    assert admit(spec, state, T0, quantity=7) == (False, state, 6 * S)
    assert admit(spec, state, T0, quantity=6)[0]
    assert next_admit_at(spec, state, T0, quantity=7) == T0 + 6 * S


@pytest.mark.parametrize("quantity", [0, -1, 11])
def test_quantity_outside_one_to_burst_is_refused(quantity: int) -> None:
    spec = ThrottleSpec.parse("10/m")
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        admit(spec, Gcra(), T0, quantity)
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        next_admit_at(spec, Gcra(), T0, quantity)


def test_naive_now_is_refused() -> None:
    spec = ThrottleSpec.parse("10/m")
    with pytest.raises(ValueError, match="naive"):
        admit(spec, Gcra(), datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        next_admit_at(spec, Gcra(), datetime(2026, 1, 1))


def test_next_admit_at() -> None:
    spec = ThrottleSpec.parse("6/m,max_burst=1")
    assert next_admit_at(spec, Gcra(), T0) is T0
    state = admit(spec, Gcra(), T0)[1]
    assert next_admit_at(spec, state, T0 + 3 * S) == T0 + 10 * S
    assert next_admit_at(spec, state, T0 + 10 * S) == T0 + 10 * S
    assert next_admit_at(spec, state, T0 + 60 * S) == T0 + 60 * S


def test_instants_are_kept_in_utc_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spec = ThrottleSpec.parse("1/h")
    before = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)  # 00:30 UTC; clocks jump from 02:00 to 03:00
    ok, state, _ = admit(spec, Gcra(), before)
    assert ok
    assert state.tat == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert state.tat is not None
    assert state.tat.tzinfo is UTC
    at = next_admit_at(spec, state, before)
    assert at.tzinfo is berlin
    assert at.isoformat() == "2026-03-29T03:30:00+02:00"
    assert admit(spec, state, datetime(2026, 3, 29, 3, 29, tzinfo=berlin)) == (False, state, timedelta(minutes=1))


def test_a_state_held_in_another_timezone_is_read_as_an_instant() -> None:
    spec = ThrottleSpec.parse("6/m,max_burst=1")
    state = Gcra(datetime(2026, 1, 1, 1, 0, 10, tzinfo=ZoneInfo("Europe/Berlin")))  # T0 + 10 s
    assert admit(spec, state, T0) == (False, state, 10 * S)
    assert admit(spec, state, T0 + 10 * S) == (True, Gcra(T0 + 20 * S), timedelta(0))


small_specs = st.builds(
    ThrottleSpec,
    limit=st.integers(1, 20),
    period=st.integers(1, 600).map(lambda n: n * S),
    max_burst=st.none() | st.integers(1, 20),
)
gaps = st.lists(st.integers(0, 90_000_000).map(lambda us: timedelta(microseconds=us)), min_size=1, max_size=40)


@given(small_specs, gaps)
def test_refusal_keeps_state_and_retry_after_is_exact(spec: ThrottleSpec, steps: list[timedelta]) -> None:
    state, now = Gcra(), T0
    for step in steps:
        now += step
        ok, new, retry = admit(spec, state, now)
        if ok:
            assert retry == timedelta(0)
            assert next_admit_at(spec, state, now) == now
        else:
            assert new is state
            assert retry > timedelta(0)
            assert next_admit_at(spec, state, now) == now + retry
            assert admit(spec, state, now + retry)[0]
            assert not admit(spec, state, now + retry - timedelta(microseconds=1))[0]
        state = new


@given(small_specs, st.integers(1, 5_000).map(lambda ms: timedelta(milliseconds=ms)), st.integers(1, 200))
def test_never_more_than_burst_plus_the_rate(spec: ThrottleSpec, every: timedelta, tries: int) -> None:
    admitted = _hammer(spec, every, tries)
    assert admitted[0] == timedelta(0)
    # GCRA's bound: any stretch of length L holds at most burst + L / interval admissions.
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= spec.burst + (admitted[j] - first) / spec.interval + 1e-3


@given(small_specs)
def test_a_burst_at_one_instant_admits_exactly_burst(spec: ThrottleSpec) -> None:
    state, count = Gcra(), 0
    while (result := admit(spec, state, T0))[0]:
        state, count = result[1], count + 1
    assert count == spec.burst
