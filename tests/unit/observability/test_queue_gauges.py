"""The queue gauges: depth by status, the oldest age, and health only for the domains given (their series removed
once they drop out, so the label set stays bounded)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from mailstream.observability.queue_gauges import publish


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_gauges_follow_the_latest_summary_and_drop_domains_no_longer_reported() -> None:
    publish({"scheduled": 3, "deferred": 1}, 42.5, {"a.test": 90.0, "b.test": 30.0})
    assert _value("mailstream_queue_messages", status="scheduled") == 3
    assert _value("mailstream_queue_oldest_message_age_seconds") == 42.5
    assert _value("mailstream_domain_health_score", domain="b.test") == 30.0
    publish({"scheduled": 0, "deferred": 2}, 0.0, {"a.test": 80.0, "c.test": 100.0})
    assert _value("mailstream_queue_messages", status="deferred") == 2
    assert _value("mailstream_domain_health_score", domain="a.test") == 80.0
    assert _value("mailstream_domain_health_score", domain="b.test") is None
    assert _value("mailstream_domain_health_score", domain="c.test") == 100.0
