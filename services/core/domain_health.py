"""A destination domain's health as one number, 0-100, from what its recent traffic did.

    score = 100 - 50 * bounce_rate - 30 * deferral_rate - 10 * slowness - 10 * staleness

- bounce_rate: bounced / (delivered + bounced), the messages that reached an outcome.
- deferral_rate: attempts that failed temporarily / all attempts.
- slowness: average delivery time (creation to delivery) on a log scale, 0 at one minute or less, 1 at
  six hours or more; 1 when attempts were made and none delivered (nothing got through at all).
- staleness: time since the last successful delivery, 0 within an hour, rising linearly to 1 at 24 hours;
  1 when attempts were made and none ever succeeded.

A domain with no attempts scores 100: nothing is known against it. All bounces score 30 (100 - 50 - 10 -
10), all deferrals 50. The result is clamped to [0, 100] and rounded to one decimal. Pure: `now` is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

BOUNCE_WEIGHT, DEFERRAL_WEIGHT, SLOWNESS_WEIGHT, STALENESS_WEIGHT = 50.0, 30.0, 10.0, 10.0
FAST = timedelta(minutes=1)  # delivery within this costs nothing
SLOW = timedelta(hours=6)  # delivery this slow costs the whole slowness weight
FRESH = timedelta(hours=1)  # a success this recent costs nothing
STALE = timedelta(hours=24)  # no success for this long costs the whole staleness weight


@dataclass(frozen=True, slots=True)
class DomainTraffic:
    """What a domain's messages did in the window the caller chose."""

    delivered: int = 0
    bounced: int = 0
    attempts: int = 0  # every delivery attempt, successful or not
    deferred_attempts: int = 0  # attempts that failed temporarily
    total_delivery_seconds: float = 0.0  # summed over the delivered messages
    last_success: datetime | None = None


@dataclass(frozen=True, slots=True)
class DomainHealth:
    score: float
    bounce_rate: float  # percent
    deferral_rate: float  # percent
    average_delivery_time: float  # seconds; 0 when nothing was delivered


def _ratio(part: float, whole: float) -> float:
    return min(1.0, max(0.0, part / whole)) if whole > 0 else 0.0


def slowness(average: timedelta) -> float:
    if average <= FAST:
        return 0.0
    return min(1.0, math.log(average / FAST) / math.log(SLOW / FAST))


def staleness(since_success: timedelta) -> float:
    if since_success <= FRESH:
        return 0.0
    return min(1.0, (since_success - FRESH) / (STALE - FRESH))


def domain_health(traffic: DomainTraffic, now: datetime) -> DomainHealth:
    bounce = _ratio(traffic.bounced, traffic.delivered + traffic.bounced)
    deferral = _ratio(traffic.deferred_attempts, traffic.attempts)
    average = traffic.total_delivery_seconds / traffic.delivered if traffic.delivered else 0.0
    if traffic.attempts == 0 and traffic.delivered == 0 and traffic.bounced == 0:
        return DomainHealth(100.0, 0.0, 0.0, 0.0)
    slow = slowness(timedelta(seconds=max(0.0, average))) if traffic.delivered else 1.0
    stale = staleness(max(timedelta(0), now - traffic.last_success)) if traffic.last_success else 1.0
    score = 100.0 - BOUNCE_WEIGHT * bounce - DEFERRAL_WEIGHT * deferral
    score -= SLOWNESS_WEIGHT * slow + STALENESS_WEIGHT * stale
    return DomainHealth(round(min(100.0, max(0.0, score)), 1), 100.0 * bounce, 100.0 * deferral, average)
