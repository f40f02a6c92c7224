"""Adaptive shaping's actions in GET /api/queue/servers and /api/admin/suspensions: in force until their end by the
reader's clock, and each key sees only what concerns its mail."""

from __future__ import annotations

from datetime import timedelta

import httpx

from mailstream.events.records import ShapingControl
from mailstream.events.serde import encode
from mailstream.events.topics import SHAPING
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, T0, IngestApp

UNTIL = T0 + timedelta(minutes=10)


def publish(ingest: IngestApp, control: ShapingControl) -> None:
    ingest.capacity.apply(SHAPING.name, control.id.encode(), encode(control))


def on_path(path: str, **fields: object) -> ShapingControl:
    base: dict[str, object] = {"rule": "try-later", "action": "suspend_path", "reason": "421 4.7.0 try later"}
    return ShapingControl.model_validate(
        {"id": f"try-later|{path}", "path": path, "since": T0, "until": UNTIL, **base, **fields}
    )


def on_queues(tenant: str) -> ShapingControl:
    return ShapingControl(
        id=f"slow|{tenant}",
        rule="slow",
        action="slow_tenant",
        tenant=tenant,
        domain="example.com",
        max_message_rate="10/m",
        reason="421 4.7.0 try later",
        since=T0,
        until=UNTIL,
        tat=T0,
    )


async def test_a_paths_action_shows_on_its_source_until_it_ends(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    publish(ingest, on_path("mail1->mx.example.com"))
    publish(ingest, on_path("mail2->mx.other.test", action="limit_path", connection_limit=1, until=T0))  # ended
    rows = {r["name"]: r for r in (await admin.get("/api/queue/servers")).json()["data"]}
    [shown] = rows["mail1"]["shaping"]
    assert (shown["action"], shown["path"], shown["reason"]) == (
        "suspend_path",
        "mail1->mx.example.com",
        "421 4.7.0 try later",
    )
    assert shown["until"] == UNTIL.isoformat()
    assert "hits" not in shown
    assert rows["mail2"]["shaping"] == []
    ingest.clock.advance(timedelta(minutes=10))
    rows = {r["name"]: r for r in (await admin.get("/api/queue/servers")).json()["data"]}
    assert rows["mail1"]["shaping"] == []  # ended by itself


async def test_the_suspensions_list_shows_each_key_what_concerns_its_mail(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    publish(ingest, on_path("mail1->mx.example.com"))  # the default pool: acme's and globex's mail
    publish(ingest, on_path("globex-ip->mx.example.com"))  # globex's pool only
    publish(ingest, on_queues("acme"))
    publish(ingest, on_queues("globex"))
    everything = (await admin.get("/api/admin/suspensions")).json()
    assert {c["id"] for c in everything["shaping"]} == {
        "try-later|mail1->mx.example.com",
        "try-later|globex-ip->mx.example.com",
        "slow|acme",
        "slow|globex",
    }
    async with ingest.client(ACME_KEY) as acme:
        own = (await acme.get("/api/admin/suspensions")).json()
    assert {c["id"] for c in own["shaping"]} == {"try-later|mail1->mx.example.com", "slow|acme"}
    async with ingest.client(GLOBEX_KEY) as globex:
        theirs = (await globex.get("/api/admin/suspensions")).json()
    assert {c["id"] for c in theirs["shaping"]} == {
        "try-later|mail1->mx.example.com",
        "try-later|globex-ip->mx.example.com",
        "slow|globex",
    }
    slow = next(c for c in everything["shaping"] if c["id"] == "slow|acme")
    assert (slow["max_message_rate"], slow["tenant"], slow["domain"]) == ("10/m", "acme", "example.com")
