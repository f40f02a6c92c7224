"""The domain health score: its formula at the edges (no traffic, all bounces, all deferrals) and between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailstream.core.domain_health import DomainTraffic, domain_health, slowness, staleness

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_no_traffic_scores_100_with_zero_rates() -> None:
    health = domain_health(DomainTraffic(), NOW)
    assert (health.score, health.bounce_rate, health.deferral_rate, health.average_delivery_time) == (100, 0, 0, 0)


def test_all_bounces_lose_bounce_slowness_and_staleness() -> None:
    health = domain_health(DomainTraffic(bounced=10, attempts=10), NOW)
    assert health.score == 30.0  # 100 - 50 (bounces) - 10 (nothing delivered) - 10 (never a success)
    assert health.bounce_rate == 100.0
    assert health.deferral_rate == 0.0


def test_all_deferrals_lose_deferral_slowness_and_staleness() -> None:
    assert domain_health(DomainTraffic(attempts=8, deferred_attempts=8), NOW).score == 50.0


def test_fast_recent_deliveries_score_100() -> None:
    traffic = DomainTraffic(delivered=5, attempts=5, total_delivery_seconds=50, last_success=NOW)
    health = domain_health(traffic, NOW)
    assert health.score == 100.0
    assert health.average_delivery_time == 10.0


def test_a_mix_costs_each_part_its_weight() -> None:
    traffic = DomainTraffic(
        delivered=3,
        bounced=1,
        attempts=8,
        deferred_attempts=4,
        total_delivery_seconds=3 * 6 * 3600,  # six hours each: the whole slowness weight
        last_success=NOW - timedelta(hours=12, minutes=30),  # half way from 1 h to 24 h
    )
    health = domain_health(traffic, NOW)
    assert health.bounce_rate == 25.0
    assert health.deferral_rate == 50.0
    assert health.score == pytest.approx(100 - 12.5 - 15 - 10 - 5, abs=0.05)


def test_slowness_and_staleness_bounds() -> None:
    assert slowness(timedelta(seconds=30)) == 0.0
    assert slowness(timedelta(days=2)) == 1.0
    assert 0 < slowness(timedelta(minutes=30)) < 1
    assert staleness(timedelta(minutes=30)) == 0.0
    assert staleness(timedelta(days=3)) == 1.0


def test_a_success_in_the_future_of_a_skewed_clock_is_fresh() -> None:
    traffic = DomainTraffic(delivered=1, attempts=1, total_delivery_seconds=1, last_success=NOW + timedelta(hours=1))
    assert domain_health(traffic, NOW).score == 100.0


def test_rates_never_pass_100_percent_on_inconsistent_counts() -> None:
    health = domain_health(DomainTraffic(delivered=1, attempts=1, deferred_attempts=5, last_success=NOW), NOW)
    assert health.deferral_rate == 100.0
    assert 0 <= health.score <= 100
