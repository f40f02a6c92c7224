"""The webhook retry schedule as whole schedules: doubling, capped, jittered into [d/2, d], given up past retry_for."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from mailstream.core.webhook_backoff import Backoff

T0 = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = Backoff(timedelta(seconds=10), timedelta(minutes=10), timedelta(hours=24))


def test_each_wait_lies_between_half_and_all_of_the_doubled_interval() -> None:
    rng = random.Random(7)
    for failures, full in [(1, 10), (2, 20), (3, 40), (4, 80), (6, 320), (7, 600), (30, 600), (500, 600)]:
        for _ in range(50):
            wait = POLICY.delay(failures, rng).total_seconds()
            assert full / 2 <= wait <= full


def test_jitter_spreads_endpoints_that_failed_together() -> None:
    rng = random.Random(1)
    waits = {POLICY.delay(3, rng) for _ in range(20)}
    assert len(waits) == 20


def test_a_whole_schedule_gives_up_after_retry_for() -> None:
    """Failures at once every time: the attempts stop after the first one that would start past 24 h."""
    rng = random.Random(3)
    now, failures, attempts = T0, 0, [T0]
    while True:
        failures += 1
        due = POLICY.next_attempt(failures, T0, now, rng)
        if due is None:
            break
        attempts.append(due)
        now = due
    assert attempts[-1] <= T0 + timedelta(hours=24)
    assert attempts[-1] + timedelta(minutes=10) > T0 + timedelta(hours=24)  # one more wait would pass it
    # 10 s ... 320 s, then ~every 5-10 minutes: between 24*6 and 24*12 attempts + the ramp
    assert 24 * 6 < len(attempts) < 24 * 12 + 10


def test_a_short_retry_for_gives_up_at_the_first_failure_that_cannot_wait() -> None:
    short = Backoff(timedelta(seconds=10), timedelta(minutes=10), timedelta(seconds=4))
    assert short.next_attempt(1, T0, T0, random.Random(0)) is None
