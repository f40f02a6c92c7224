"""Durations, retry backoff (as whole schedules) and proactive expiry."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mailstream.core.backoff import RetryPolicy, next_attempt
from mailstream.core.duration import format_duration, parse_duration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20 minutes", 1200),
        ("1h", 3600),
        ("90s", 90),
        ("7 days", 604800),
        ("1h30m", 5400),
        ("2 weeks", 1209600),
        ("45", 45),
        (30, 30),
        (1.5, 1.5),
        ("1 hour 5 min", 3900),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "soon", "5 fortnights", "m5", -3])
def test_bad_durations_are_refused(bad: str | int) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=7), "7d"),
        (timedelta(hours=2), "2h"),
        (timedelta(minutes=20), "20m"),
        (timedelta(seconds=61), "61s"),
    ],
)
def test_format_duration_round_trips(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


class _NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def _schedule(policy: RetryPolicy) -> list[timedelta | None]:
    """Ages at which each retry happens, with jitter removed, until expiry (None)."""
    rng = _NoJitter()
    ages: list[timedelta | None] = []
    now = T0
    for attempts in range(20):
        plan = next_attempt(policy, created=T0, now=now, attempts_made=attempts, expires_at=None, rng=rng)
        if plan.at is None:
            ages.append(None)
            break
        now = plan.at
        ages.append(timedelta(minutes=round((now - T0).total_seconds() / 60)))
    return ages


def test_default_schedule_matches_kumomta() -> None:
    minutes = [None if a is None else int(a.total_seconds() // 60) for a in _schedule(RetryPolicy())]
    # +20m, +40m, +80m, ... cumulative: 20, 60, 140, 300, 620, 1260, 2540, 5100, then expiry.
    assert minutes == [20, 60, 140, 300, 620, 1260, 2540, 5100, None]


def test_capped_schedule() -> None:
    policy = RetryPolicy(
        retry_interval=timedelta(minutes=10), max_retry_interval=timedelta(minutes=30), max_age=timedelta(hours=2)
    )
    minutes = [None if a is None else int(a.total_seconds() // 60) for a in _schedule(policy)]
    assert minutes == [10, 30, 60, 90, None]


def test_jitter_is_bounded() -> None:
    policy = RetryPolicy(retry_interval=timedelta(hours=1))
    rng = random.Random(1)
    delays = [policy.delay(0, rng).total_seconds() for _ in range(2000)]
    assert min(delays) >= 3600 - 30
    assert max(delays) <= 3600 + 30
    assert max(delays) - min(delays) > 50


def test_per_message_expiry_wins_over_max_age() -> None:
    plan = next_attempt(
        RetryPolicy(), created=T0, now=T0, attempts_made=0, expires_at=T0 + timedelta(minutes=5), rng=random.Random(0)
    )
    assert plan.at is None
    assert "expires=" in plan.reason
