"""Retry timing, KumoMTA's formula: retry_interval × 2^attempts, capped, with jitter; proactive expiry."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_interval: timedelta = timedelta(minutes=20)
    max_retry_interval: timedelta | None = None
    max_age: timedelta = timedelta(days=7)

    def delay(self, attempts_made: int, rng: random.Random) -> timedelta:
        """Delay before the next try after `attempts_made` failed attempts (0 on the first failure)."""
        base = self.retry_interval.total_seconds()
        seconds = base * (2**attempts_made)
        if self.max_retry_interval is not None:
            seconds = min(seconds, self.max_retry_interval.total_seconds())
        jitter = min(base / 20, 60.0)
        return timedelta(seconds=max(0.0, seconds + rng.uniform(-jitter / 2, jitter / 2)))


@dataclass(frozen=True, slots=True)
class NextAttempt:
    at: datetime | None  # None: the message expires now
    reason: str


def next_attempt(
    policy: RetryPolicy,
    *,
    created: datetime,
    now: datetime,
    attempts_made: int,
    expires_at: datetime | None,
    rng: random.Random,
) -> NextAttempt:
    """When to try again, or None when the next try would fall past max_age (or the message's own expiry)."""
    due = now + policy.delay(attempts_made, rng)
    limit = expires_at if expires_at is not None else created + policy.max_age
    if due >= limit:
        what = f"expires={limit.isoformat()}" if expires_at else f"max_age={policy.max_age}"
        return NextAttempt(None, f"Next delivery time would be {due.isoformat()} which exceeds {what}")
    return NextAttempt(due, "")
