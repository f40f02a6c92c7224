"""Prometheus gauges of the queues, set from a QueueMetrics summary: depth by status, the oldest queued
message's age, and each of the busiest domains' health score (their number is bounded by the caller, and
domains that drop out of the top are removed, so the label set stays small)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Gauge

QUEUE_DEPTH = Gauge("mailstream_queue_messages", "Messages in the read model by status", ["status"])
OLDEST_AGE = Gauge("mailstream_queue_oldest_message_age_seconds", "Age of the oldest message not yet final")
DOMAIN_HEALTH = Gauge("mailstream_domain_health_score", "Health score 0-100 of a busy destination domain", ["domain"])
_shown: set[str] = set()


def publish(by_status: Mapping[str, int], oldest_age: float, health: Mapping[str, float]) -> None:
    for status, count in by_status.items():
        QUEUE_DEPTH.labels(status).set(count)
    OLDEST_AGE.set(oldest_age)
    for gone in _shown - health.keys():
        DOMAIN_HEALTH.remove(gone)
    _shown.clear()
    for domain, score in health.items():
        DOMAIN_HEALTH.labels(domain).set(score)
        _shown.add(domain)
