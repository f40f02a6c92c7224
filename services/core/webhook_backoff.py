"""When a failed webhook delivery is tried again, and when it is given up: a pure schedule.

Exponential with "equal jitter": the n-th wait is drawn from [d/2, d] where d = interval × 2^(n-1), capped,
so endpoints that failed together do not all come back in the same instant. The event is given up once the
next attempt would start past `retry_for` after its first failure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Backoff:
    interval: timedelta
    max_interval: timedelta
    retry_for: timedelta

    def delay(self, failures: int, rng: random.Random) -> timedelta:
        """Wait after the `failures`-th failed attempt of one event (1: after the first)."""
        ceiling = self.max_interval.total_seconds()
        seconds = min(ceiling, self.interval.total_seconds() * 2 ** min(failures - 1, 62))
        return timedelta(seconds=rng.uniform(seconds / 2, seconds))

    def next_attempt(
        self, failures: int, first_failure: datetime, now: datetime, rng: random.Random
    ) -> datetime | None:
        """When to try again after `failures` failed attempts; None: give up (past `retry_for`)."""
        due = now + self.delay(failures, rng)
        return None if due > first_failure + self.retry_for else due
