"""What GET /api/queue/servers and GET /api/queue/stats answer, from the capacity view and the config (pure).

A source's usage counts on the day it was published for: read on a later day (in the daily-reset
timezone) it is 0, whether or not the scheduler has sent anything since.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from mailstream.config.scheduling import EgressConfig, EgressSource, QueueDefaults
from mailstream.core.completion import SourceCapacity, estimate_completion
from mailstream.core.daily_limit import day_of, next_reset
from mailstream.core.egress_path import EgressPath
from mailstream.core.sliding_window import SlidingWindow, next_free
from mailstream.events.records import QueueStats, ShapingControl, SourceUsage

QUEUED = ("scheduled", "deferred", "suspended", "ready")  # waiting, at stage 1 or for an egress source
SENDING = ("in_delivery",)
SENT = ("delivered",)
FAILED = ("bounced", "expired", "cancelled")
BACKLOG = ("scheduled", "deferred", "ready")  # what still needs egress capacity (suspended waits for a resume)
_SOURCE_IDS = uuid.UUID("6f1c3a52-1b7e-4d55-9a51-6d1f0c9a7e10")


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def used_today(usage: SourceUsage | None, egress: EgressConfig, now: datetime) -> int:
    today = day_of(now, egress.daily_reset_timezone).isoformat()
    return usage.used if usage is not None and usage.day == today else 0


def _daily_limit(source: EgressSource, usage: SourceUsage | None) -> int | None:
    """The scheduler's cap when it has published one (it enforces its own configuration)."""
    return usage.daily_limit if usage is not None and usage.daily_limit is not None else source.daily_limit


def sources_for_tenant(egress: EgressConfig, queues: QueueDefaults, tenant: str | None) -> set[str]:
    """The sources a tenant's mail can leave by: those of the default pool and of every queue rule's pool
    that applies to the tenant (a rule naming no tenant applies to all)."""
    pools = {queues.egress_pool} | {
        r.egress_pool for r in queues.rules if r.egress_pool is not None and r.tenant in (None, tenant)
    }
    return {e.name for pool in egress.pools if pool.name in pools for e in pool.entries}


def server_rows(
    egress: EgressConfig,
    usage: Mapping[str, SourceUsage],
    now: datetime,
    only: set[str] | None = None,
    shaping: Iterable[ShapingControl] = (),
) -> list[dict[str, Any]]:
    """Each source's day (`only`: just these sources), and the shaping actions in force on its paths."""
    on_paths: dict[str, list[dict[str, Any]]] = {}
    for control in shaping:
        if control.path is not None:
            on_paths.setdefault(EgressPath.parse(control.path).source, []).append(shaping_row(control))
    zone = egress.daily_reset_timezone
    rows = []
    for source in egress.sources:
        if only is not None and source.name not in only:
            continue
        seen = usage.get(source.name)
        used, limit = used_today(seen, egress, now), _daily_limit(source, seen)
        row: dict[str, Any] = {
            "uuid": str(uuid.uuid5(_SOURCE_IDS, source.name)),
            "name": source.name,
            "daily_limit": limit,
            "daily_used": used,
            "daily_remaining": max(0, limit - used) if limit is not None else None,
            "from_email": source.from_email,
            "day": day_of(now, zone).isoformat(),
            "timezone": zone.key,
            "resets_at": _iso(next_reset(now, zone)),
            "send_window": None,
            "sliding_window": None,
            "as_of": _iso(seen.as_of) if seen is not None else None,
            "shaping": on_paths.get(source.name, []),
        }
        if source.send_window is not None:
            opened = source.send_window.contains(now)
            row["send_window"] = {
                "open": opened,
                "closes_at": _iso(source.send_window.closes_at(now)),
                "next_open": None if opened else _iso(source.send_window.next_open(now)),
            }
        if source.sliding_window is not None:
            window = SlidingWindow(source.sliding_window.limit, source.sliding_window.span)
            sends = seen.sends if seen is not None else ()
            row["sliding_window"] = {
                "limit": window.limit,
                "span_seconds": window.span.total_seconds(),
                "used": sum(1 for t in sends if t > now - window.span),
                "next_free": _iso(next_free(window, sends, now)),
            }
        rows.append(row)
    return rows


def shaping_row(control: ShapingControl) -> dict[str, Any]:
    """An adaptive-shaping action as the API shows it (its counting state left out)."""
    row = control.model_dump(exclude={"hits", "tat"})
    return {**row, "since": _iso(control.since), "until": _iso(control.until)}


def stats_report(
    records: Iterable[QueueStats],
    egress: EgressConfig,
    usage: Mapping[str, SourceUsage],
    now: datetime,
    *,
    tenant: str | None = None,
    all_tenants: bool = False,
    campaign: str | None = None,
) -> dict[str, Any]:
    """Totals of the tenant's rows (every tenant's with `all_tenants`), optionally of one campaign."""
    by_status: Counter[str] = Counter()
    backlog_by_pool: Counter[str] = Counter()
    rows, suspensions, as_of = [], {}, None
    for record in records:
        if not all_tenants and record.tenant != tenant:
            continue
        as_of = max(as_of, record.as_of) if as_of is not None else record.as_of
        for s in record.suspensions:
            if campaign is None or s.campaign in (None, campaign):
                suspensions[s.id] = s.model_dump(mode="json")
        for row in record.rows:
            if campaign is not None and row.campaign != campaign:
                continue
            by_status.update(row.counts)
            backlog_by_pool[row.egress_pool] += sum(row.counts.get(s, 0) for s in BACKLOG)
            rows.append(
                {
                    "tenant": row.tenant,
                    "campaign": row.campaign,
                    "egress_pool": row.egress_pool,
                    **_totals(Counter(row.counts)),
                    "by_status": dict(row.counts),
                }
            )
    return {
        **_totals(by_status),
        "by_status": dict(sorted(by_status.items())),
        "campaigns": sorted(rows, key=lambda r: (r["tenant"] or "", r["campaign"] or "", r["egress_pool"])),
        "suspensions": sorted(suspensions.values(), key=lambda s: s["since"]),
        "estimated_completion": _estimate(backlog_by_pool, by_status["suspended"], egress, usage, now),
        "as_of": _iso(as_of),
    }


def _totals(counts: Counter[str]) -> dict[str, int]:
    return {
        "total_queued": sum(counts[s] for s in QUEUED),
        "total_sending": sum(counts[s] for s in SENDING),
        "total_sent": sum(counts[s] for s in SENT),
        "total_failed": sum(counts[s] for s in FAILED),
    }


def _estimate(
    backlog_by_pool: Mapping[str, int],
    suspended: int,
    egress: EgressConfig,
    usage: Mapping[str, SourceUsage],
    now: datetime,
) -> dict[str, Any]:
    """The latest finish over the pools, each pool's backlog sent by its sources as if it had them to itself."""
    finishes = []
    for pool_name, backlog in backlog_by_pool.items():
        pool = next((p for p in egress.pools if p.name == pool_name), None)
        sources = (
            []
            if pool is None
            else [
                _capacity(egress.source(e.name), usage.get(e.name), egress, now) for e in pool.entries if e.weight > 0
            ]
        )
        finishes.append(estimate_completion(backlog, sources, now, egress.daily_reset_timezone))
    total = sum(backlog_by_pool.values())
    if not finishes or total == 0:
        done = estimate_completion(0, [], now, egress.daily_reset_timezone)
    elif any(f.at is None for f in finishes):
        done = next(f for f in finishes if f.at is None)
    else:
        done = max(finishes, key=lambda f: f.at or now)
    return {
        "at": _iso(done.at),
        "phrase": done.phrase,
        "sending_days": done.sending_days,
        "backlog": total,
        "suspended_not_counted": suspended,
        "basis": "this backlog alone on its pools' sources: what their daily caps leave today and in full "
        "after each reset, inside their send windows, at their sliding-window rates",
    }


def _capacity(source: EgressSource, usage: SourceUsage | None, egress: EgressConfig, now: datetime) -> SourceCapacity:
    window = source.sliding_window
    return SourceCapacity(
        daily_limit=_daily_limit(source, usage),
        used_today=used_today(usage, egress, now),
        send_window=source.send_window,
        sliding_window=SlidingWindow(window.limit, window.span) if window is not None else None,
    )
