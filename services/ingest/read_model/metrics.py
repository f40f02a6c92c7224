"""QueueMetrics of a scope (everything, a tenant, a campaign, a queue) from the message store.

Definitions (seconds, percentages 0-100):
- queue_depth / total_size_bytes / oldest and newest_message_age / average_queue_time: over the messages not
  yet final (scheduled, ready, in_delivery, suspended, deferred), ages from their creation.
- average_delivery_time: creation to delivery, over delivered messages; delivery_rate: deliveries in the last
  hour (messages per hour).
- total_retries: attempts beyond each message's first; retry_rate: messages with more than one attempt among
  those with any; bounce_rate: bounced among delivered + bounced.
- messages_last_*: messages created in that window.
- domain_health_scores: `mailstream.core.domain_health` over each domain's messages of the last 24 hours, for
  the `top` domains by traffic (so is queue_depth_by_domain and _by_campaign: the deepest `top`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from mailstream.core.bounce_classify import BounceType
from mailstream.core.domain_health import DomainTraffic, domain_health
from mailstream.events.records import MessageStatus
from mailstream.ingest.read_model.query import QueueFilter, ms, where
from mailstream.ingest.read_model.store import MessageStore

HEALTH_WINDOW = timedelta(hours=24)
_HOUR = 3_600_000


def _scope(f: QueueFilter, extra: str = "") -> tuple[str, list[object]]:
    conds, params = where(f)
    if extra:
        conds.append(extra)
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


def _iso(at_ms: int | None) -> str | None:
    return None if at_ms is None else datetime.fromtimestamp(at_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def status_counts(store: MessageStore, scope: QueueFilter) -> dict[str, int]:
    """Messages by status, every status named (an index-only scan)."""
    by_status = dict.fromkeys(get_args(MessageStatus), 0)
    sql, params = _scope(scope)
    for row in store.rows(f"SELECT status, count(*) FROM messages m{sql} GROUP BY status", params):
        by_status[row[0]] = row[1]
    return by_status


def oldest_queued_age(store: MessageStore, scope: QueueFilter, now: datetime) -> float:
    """Seconds since the oldest message not yet final was created; 0 when there is none (one index seek)."""
    sql, params = _scope(scope, "m.final = 0")
    oldest = store.rows(f"SELECT min(created_at) FROM messages m{sql}", params)[0][0]
    return max(0.0, ((ms(now) or 0) - oldest) / 1000) if oldest is not None else 0.0


def queue_metrics(store: MessageStore, scope: QueueFilter, now: datetime, top: int = 50) -> dict[str, Any]:
    t = ms(now) or 0
    by_status = status_counts(store, scope)
    sql, params = _scope(scope)
    agg = store.rows(
        "SELECT count(*), "
        "sum(CASE WHEN final = 0 THEN 1 ELSE 0 END), sum(CASE WHEN final = 0 THEN size_bytes ELSE 0 END), "
        "avg(CASE WHEN final = 0 THEN ? - created_at END), "
        "min(CASE WHEN final = 0 THEN created_at END), max(CASE WHEN final = 0 THEN created_at END), "
        "avg(CASE WHEN delivered_at IS NOT NULL THEN delivered_at - created_at END), "
        "sum(CASE WHEN delivered_at >= ? THEN 1 ELSE 0 END), "
        "sum(max(num_attempts - 1, 0)), sum(CASE WHEN num_attempts > 1 THEN 1 ELSE 0 END), "
        "sum(CASE WHEN num_attempts > 0 THEN 1 ELSE 0 END), "
        "sum(CASE WHEN created_at >= ? THEN 1 ELSE 0 END), sum(CASE WHEN created_at >= ? THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN created_at >= ? THEN 1 ELSE 0 END) FROM messages m{sql}",
        [t, t - _HOUR, t - _HOUR, t - 24 * _HOUR, t - 7 * 24 * _HOUR, *params],
    )[0]
    total, depth, size, avg_queue, oldest, newest, avg_delivery, last_hour = agg[:8]
    retries, retried, attempted, created_1h, created_24h, created_7d = agg[8:]
    bounces = dict.fromkeys(get_args(BounceType), 0)
    sql_b, params_b = _scope(scope, "m.status = 'bounced'")
    for row in store.rows(
        f"SELECT coalesce(bounce_type, 'unknown'), count(*) FROM messages m{sql_b} GROUP BY 1", params_b
    ):
        bounces[row[0]] = bounces.get(row[0], 0) + row[1]
    delivered, bounced = by_status["delivered"], by_status["bounced"]
    return {
        "total_messages": total,
        "messages_by_status": by_status,
        "average_queue_time": (avg_queue or 0) / 1000,
        "average_delivery_time": (avg_delivery or 0) / 1000,
        "delivery_rate": float(last_hour or 0),
        "queue_depth": depth or 0,
        "queue_depth_by_domain": _depth_by(store, scope, "domain", top),
        "queue_depth_by_campaign": _depth_by(store, scope, "campaign_id", top),
        "total_retries": retries or 0,
        "retry_rate": 100.0 * (retried or 0) / attempted if attempted else 0.0,
        "bounce_rate": 100.0 * bounced / (delivered + bounced) if delivered + bounced else 0.0,
        "bounces_by_type": bounces,
        "domain_health_scores": domain_scores(store, scope, now, top),
        "messages_last_hour": created_1h or 0,
        "messages_last_24h": created_24h or 0,
        "messages_last_7d": created_7d or 0,
        "total_size_bytes": size or 0,
        "oldest_message_age": max(0.0, (t - oldest) / 1000) if oldest is not None else 0.0,
        "newest_message_age": max(0.0, (t - newest) / 1000) if newest is not None else 0.0,
    }


def _depth_by(store: MessageStore, scope: QueueFilter, column: str, top: int) -> dict[str, int]:
    sql, params = _scope(scope, "m.final = 0")
    rows = store.rows(
        f"SELECT coalesce({column}, ''), count(*) AS n FROM messages m{sql} GROUP BY 1 ORDER BY n DESC LIMIT ?",
        [*params, top],
    )
    return {row[0]: row[1] for row in rows}


def domain_scores(store: MessageStore, scope: QueueFilter, now: datetime, top: int) -> dict[str, dict[str, Any]]:
    t = ms(now) or 0
    sql, params = _scope(scope, "m.created_at >= ?")
    rows = store.rows(
        "SELECT domain, count(*) AS n, sum(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'bounced' AND num_attempts > 0 THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'bounced' THEN 1 ELSE 0 END), sum(num_attempts), "
        "sum(CASE WHEN delivered_at IS NOT NULL THEN delivered_at - created_at ELSE 0 END), max(delivered_at) "
        f"FROM messages m{sql} GROUP BY domain ORDER BY n DESC LIMIT ?",
        [*params, t - int(HEALTH_WINDOW.total_seconds() * 1000), top],
    )
    scores: dict[str, dict[str, Any]] = {}
    for domain, _, delivered, bounced_tried, bounced, attempts, delivery_ms, last in rows:
        traffic = DomainTraffic(
            delivered=delivered,
            bounced=bounced,
            attempts=attempts,
            deferred_attempts=max(0, attempts - delivered - bounced_tried),
            total_delivery_seconds=delivery_ms / 1000,
            last_success=datetime.fromtimestamp(last / 1000, UTC) if last is not None else None,
        )
        health = domain_health(traffic, now)
        scores[domain] = {
            "domain": domain,
            "score": health.score,
            "bounce_rate": health.bounce_rate,
            "deferral_rate": health.deferral_rate,
            "average_delivery_time": health.average_delivery_time,
            "last_successful_delivery": _iso(last),
            "throttle_rate": None,
        }
    return scores


def delivery_timeline(
    store: MessageStore, scope: QueueFilter, now: datetime, span: timedelta, points: int
) -> dict[str, Any]:
    """Deliveries and bounces in each of `points` equal buckets ending at `now`, with each bucket's delivery rate
    (per hour): the dashboard's chart. Deliveries count at their `delivered_at`, bounces at their last update."""
    t = ms(now) or 0
    width = max(1, int(span.total_seconds() * 1000) // points)
    start = t - width * points
    counts = {"delivered": [0] * points, "bounced": [0] * points}
    for status, column in (("delivered", "delivered_at"), ("bounced", "updated_at")):
        sql, params = _scope(scope, f"m.status = '{status}' AND m.{column} >= ? AND m.{column} < ?")
        for bucket, n in store.rows(
            f"SELECT (m.{column} - ?) / ?, count(*) FROM messages m{sql} GROUP BY 1", [start, width, *params, start, t]
        ):
            if 0 <= bucket < points:
                counts[status][bucket] = n
    per_hour = _HOUR / width
    return {
        "since": _iso(start),
        "until": _iso(t),
        "bucket_seconds": width / 1000,
        "points": [
            {
                "at": _iso(start + i * width),
                "delivered": counts["delivered"][i],
                "bounced": counts["bounced"][i],
                "delivery_rate": counts["delivered"][i] * per_hour,
            }
            for i in range(points)
        ],
    }
