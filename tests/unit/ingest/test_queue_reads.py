"""GET /api/queue/servers and /api/queue/stats over the capacity view: what each key may see (the numbers
themselves are queue_report's, tested in tests/unit/ingest/test_queue_report.py)."""

from __future__ import annotations

import httpx

from mailstream.events.records import QueueStats, SourceUsage, StatusCounts
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, T0, IngestApp


def stats(partition: int, tenant: str, *rows: tuple[str | None, dict[str, int]]) -> QueueStats:
    return QueueStats(
        partition=partition,
        tenant=tenant,
        as_of=T0,
        rows=tuple(
            StatusCounts(tenant=tenant, campaign=campaign, egress_pool="shared", counts=counts)
            for campaign, counts in rows
        ),
    )


async def test_servers_show_todays_usage_from_the_view(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    ingest.publish_usage(SourceUsage(source="mail1", day="2026-11-23", used=30, daily_limit=100, as_of=T0))
    ingest.publish_usage(SourceUsage(source="mail2", day="2026-11-22", used=50, daily_limit=50, as_of=T0))
    rows = (await admin.get("/api/queue/servers")).json()["data"]
    assert [r["name"] for r in rows] == ["mail1", "mail2", "globex-ip"]
    mail1, mail2, _ = rows
    assert (mail1["daily_used"], mail1["daily_remaining"], mail1["from_email"]) == (30, 70, "adam@mail1.test")
    assert (mail2["daily_used"], mail2["daily_remaining"]) == (0, 50)  # yesterday's count
    assert mail1["as_of"] == T0.isoformat()


async def test_a_tenant_sees_the_sources_its_mail_can_use(ingest: IngestApp) -> None:
    async with ingest.client(ACME_KEY) as acme:
        acme_rows = (await acme.get("/api/queue/servers")).json()["data"]
    async with ingest.client(GLOBEX_KEY) as globex:
        globex_rows = (await globex.get("/api/queue/servers")).json()["data"]
    assert [r["name"] for r in acme_rows] == ["mail1", "mail2"]  # the default pool
    assert [r["name"] for r in globex_rows] == ["mail1", "mail2", "globex-ip"]  # and its rule's pool


async def test_stats_count_the_tenants_the_key_may_see(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    ingest.publish_stats(
        stats(0, "acme", ("spring", {"scheduled": 3, "delivered": 9, "bounced": 1}), ("autumn", {"in_delivery": 2}))
    )
    ingest.publish_stats(stats(1, "globex", (None, {"scheduled": 5})))

    def totals(report: dict[str, object]) -> tuple[object, ...]:
        return tuple(report[k] for k in ("total_queued", "total_sending", "total_sent", "total_failed"))

    everyone = (await admin.get("/api/queue/stats")).json()["data"]
    assert totals(everyone) == (8, 2, 9, 1)
    assert everyone["by_status"] == {"bounced": 1, "delivered": 9, "in_delivery": 2, "scheduled": 8}
    assert everyone["as_of"] == T0.isoformat()
    assert set(everyone["estimated_completion"]) >= {"at", "phrase", "backlog"}
    assert totals((await admin.get("/api/queue/stats", params={"tenant": "globex"})).json()["data"]) == (5, 0, 0, 0)
    async with ingest.client(ACME_KEY) as acme:
        own = (await acme.get("/api/queue/stats")).json()["data"]
        spring = (await acme.get("/api/queue/stats", params={"campaign": "spring", "tenant": "acme"})).json()["data"]
    assert totals(own) == (3, 2, 9, 1)
    assert [c["campaign"] for c in own["campaigns"]] == ["autumn", "spring"]
    assert totals(spring) == (3, 0, 9, 1)


async def test_a_deleted_snapshot_no_longer_counts(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    ingest.publish_stats(stats(1, "globex", (None, {"scheduled": 5})))
    ingest.capacity.apply("mail.queue-stats", b"1/globex", None)  # a tombstone on the compacted topic
    assert (await admin.get("/api/queue/stats")).json()["data"]["total_queued"] == 0
