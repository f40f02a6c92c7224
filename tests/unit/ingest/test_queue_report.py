"""What the capacity endpoints answer from published snapshots: the day boundary, windows, tenant filters,
totals and the completion estimate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailstream.config.model import parse_config
from mailstream.events.records import QueueStats, QueueSuspension, SourceUsage, StatusCounts
from mailstream.ingest.queue_report import server_rows, sources_for_tenant, stats_report

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Berlin
EGRESS = parse_config(
    {
        "egress": {
            "daily_reset_timezone": "Europe/Berlin",
            "sources": [
                {
                    "name": "mail2",
                    "daily_limit": 1000,
                    "from_email": "adam@mail2.test",
                    "sliding_window": {"limit": 2, "span": "30 minutes"},
                },
                {"name": "mail3", "daily_limit": 1000, "send_window": "08:00-20:00 Europe/Berlin"},
                {"name": "spare"},
            ],
            "pools": [{"name": "warm", "entries": [{"name": "mail2"}, {"name": "mail3"}]}],
        },
        "queues": {"egress_pool": "warm"},
    },
    env={},
).egress


def usage(source: str, day: str, used: int, sends: tuple[datetime, ...] = ()) -> SourceUsage:
    return SourceUsage(source=source, day=day, used=used, daily_limit=1000, sends=sends, as_of=NOW)


def test_servers_show_todays_usage_and_the_documented_fields() -> None:
    rows = server_rows(EGRESS, {"mail2": usage("mail2", "2026-11-23", 800)}, NOW)
    mail2 = rows[0]
    assert {k: mail2[k] for k in ("name", "daily_limit", "daily_used", "daily_remaining", "from_email")} == {
        "name": "mail2",
        "daily_limit": 1000,
        "daily_used": 800,
        "daily_remaining": 200,
        "from_email": "adam@mail2.test",
    }
    assert mail2["uuid"] == server_rows(EGRESS, {}, NOW)[0]["uuid"]  # stable per name
    assert (mail2["day"], mail2["timezone"]) == ("2026-11-23", "Europe/Berlin")
    assert mail2["resets_at"] == "2026-11-23T23:00:00+00:00"
    assert [r["name"] for r in rows] == ["mail2", "mail3", "spare"]
    assert (rows[2]["daily_limit"], rows[2]["daily_remaining"]) == (None, None)


def test_yesterdays_usage_counts_as_zero_today() -> None:
    rows = server_rows(EGRESS, {"mail2": usage("mail2", "2026-11-22", 1000)}, NOW)
    assert (rows[0]["daily_used"], rows[0]["daily_remaining"]) == (0, 1000)
    just_before_midnight = datetime(2026, 11, 23, 22, 59, tzinfo=UTC)
    assert server_rows(EGRESS, {"mail2": usage("mail2", "2026-11-23", 5)}, just_before_midnight)[0]["daily_used"] == 5
    assert (
        server_rows(EGRESS, {"mail2": usage("mail2", "2026-11-23", 5)}, just_before_midnight + timedelta(minutes=1))[0][
            "daily_used"
        ]
        == 0
    )


def test_windows_are_reported_as_of_now() -> None:
    sends = (NOW - timedelta(minutes=40), NOW - timedelta(minutes=20), NOW - timedelta(minutes=10))
    rows = server_rows(EGRESS, {"mail2": usage("mail2", "2026-11-23", 3, sends)}, NOW)
    assert rows[0]["sliding_window"] == {
        "limit": 2,
        "span_seconds": 1800.0,
        "used": 2,
        "next_free": (NOW + timedelta(minutes=10)).isoformat(),
    }
    assert rows[1]["send_window"] == {"open": True, "closes_at": "2026-11-23T19:00:00+00:00", "next_open": None}
    evening = server_rows(EGRESS, {}, datetime(2026, 11, 23, 20, 0, tzinfo=UTC))[1]["send_window"]
    assert evening == {"open": False, "closes_at": None, "next_open": "2026-11-24T07:00:00+00:00"}


def stats(
    partition: int,
    tenant: str | None,
    *rows: tuple[str | None, dict[str, int]],
    suspended: tuple[QueueSuspension, ...] = (),
) -> QueueStats:
    return QueueStats(
        partition=partition,
        tenant=tenant,
        as_of=NOW,
        suspensions=suspended,
        rows=tuple(StatusCounts(tenant=tenant, campaign=c, egress_pool="warm", counts=counts) for c, counts in rows),
    )


RECORDS = [
    stats(
        1,
        "acme",
        ("spring", {"scheduled": 1500, "ready": 500, "in_delivery": 3, "delivered": 40}),
        ("autumn", {"suspended": 7, "bounced": 2, "expired": 1}),
    ),
    stats(2, "globex", (None, {"deferred": 9, "delivered": 100})),
    stats(3, None, (None, {"delivered": 1})),
    stats(4, None, (None, {"cancelled": 2})),
]


def test_a_tenant_sees_only_its_own_numbers() -> None:
    report = stats_report(RECORDS, EGRESS, {}, NOW, tenant="acme")
    assert {k: report[k] for k in ("total_queued", "total_sending", "total_sent", "total_failed")} == {
        "total_queued": 2007,
        "total_sending": 3,
        "total_sent": 40,
        "total_failed": 3,
    }
    assert {r["tenant"] for r in report["campaigns"]} == {"acme"}


def test_admin_sees_every_tenant_including_tenantless_queues() -> None:
    report = stats_report(RECORDS, EGRESS, {}, NOW, all_tenants=True)
    assert report["total_sent"] == 141
    assert report["by_status"]["cancelled"] == 2
    assert report["total_queued"] == 2016


def test_campaign_filter() -> None:
    report = stats_report(RECORDS, EGRESS, {}, NOW, tenant="acme", campaign="autumn")
    assert (report["total_queued"], report["total_failed"], report["total_sent"]) == (7, 3, 0)
    assert [r["campaign"] for r in report["campaigns"]] == ["autumn"]


def test_estimate_counts_what_still_needs_capacity() -> None:
    # 2,000 waiting (acme's spring campaign; autumn's 7 are suspended). mail2 goes at 2 per 30 minutes (4 an
    # hour); mail3 has 100 of its 1,000 left today and opens at 08:00 Berlin. By Wednesday 08:00 Berlin:
    # mail3 100 + 1,000 + 1,000, mail2 4/h × 45 h = 180 — the 2,000th goes when mail3 opens on Wednesday.
    spent = {"mail2": usage("mail2", "2026-11-23", 0), "mail3": usage("mail3", "2026-11-23", 900)}
    estimate = stats_report(RECORDS, EGRESS, spent, NOW, tenant="acme")["estimated_completion"]
    assert (estimate["backlog"], estimate["suspended_not_counted"]) == (2000, 7)
    assert estimate["at"] == "2026-11-25T07:00:00+00:00"
    assert (estimate["sending_days"], estimate["phrase"]) == (3, "about 2 days")


def test_nothing_queued_is_nothing_to_send() -> None:
    report = stats_report(RECORDS, EGRESS, {}, NOW, tenant="nobody")
    assert report["total_queued"] == 0
    assert report["estimated_completion"]["phrase"] == "nothing to send"
    assert report["as_of"] is None


def test_suspensions_are_listed_once_per_id() -> None:
    s = QueueSuspension(id="cmd-1", domain="example.com", since=NOW, issued_by="admin")
    records = [stats(p, None, suspended=(s,)) for p in range(8)]
    assert [x["id"] for x in stats_report(records, EGRESS, {}, NOW, all_tenants=True)["suspensions"]] == ["cmd-1"]


def test_a_tenant_is_shown_only_the_sources_its_mail_can_use() -> None:
    config = parse_config(
        {
            "egress": {
                "sources": [{"name": "mail2"}, {"name": "mail3"}, {"name": "vip1"}, {"name": "spare"}],
                "pools": [
                    {"name": "warm", "entries": [{"name": "mail2"}, {"name": "mail3"}]},
                    {"name": "vip", "entries": [{"name": "vip1"}]},
                    {"name": "idle", "entries": [{"name": "spare"}]},
                ],
            },
            "queues": {
                "egress_pool": "warm",
                "rules": [{"tenant": "acme", "campaign": "launch", "egress_pool": "vip"}],
            },
        },
        env={},
    )
    assert sources_for_tenant(config.egress, config.queues, "acme") == {"mail2", "mail3", "vip1"}
    assert sources_for_tenant(config.egress, config.queues, "globex") == {"mail2", "mail3"}
    rows = server_rows(config.egress, {}, NOW, sources_for_tenant(config.egress, config.queues, "globex"))
    assert [r["name"] for r in rows] == ["mail2", "mail3"]
    assert [r["name"] for r in server_rows(config.egress, {}, NOW)] == ["mail2", "mail3", "vip1", "spare"]
