"""The projection into a real SQLite store, read through the HTTP routes (ASGI, no broker): every sort both ways
paged by cursor equals the full sorted set, filters and search find what the records say, a tenant sees its own."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError

from mailstream.config.model import Config
from mailstream.core.clock import ManualClock
from mailstream.events.serde import encode
from mailstream.events.status import next_version
from mailstream.events.topics import ACCEPTED, STATUS
from mailstream.ingest.problems import Problem, from_request_validation
from mailstream.ingest.read_model.api import read_model_router
from mailstream.ingest.read_model.projection import Projector
from mailstream.ingest.read_model.query import SORT_FIELDS
from mailstream.ingest.read_model.rows import QueueResolver
from mailstream.ingest.read_model.store import MessageStore
from tests.infra.read_model_records import T0, Synthetic, message, records

N = 300
CONFIG = Config.model_validate(
    {
        "ingest": {
            "api_keys": [
                {"key": "admin-key-0123456789", "admin": True},
                {"key": "acme-key-0123456789", "tenant": "acme"},
            ]
        }
    }
)


@pytest.fixture(scope="module")
def synthetic() -> list[Synthetic]:
    rng = random.Random(7)
    return [message(i, rng) for i in range(N)]


@pytest.fixture
def store(tmp_path: Path, synthetic: list[Synthetic]) -> MessageStore:
    s = MessageStore(tmp_path / "messages.sqlite3")
    projector = Projector(s, QueueResolver(CONFIG.queues))
    recs = records(synthetic)
    for start in range(0, len(recs), 97):  # batches that split messages' records
        projector.apply(recs[start : start + 97])
    return s


@pytest.fixture
async def client(store: MessageStore) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(read_model_router(CONFIG, store, ManualClock(T0 + timedelta(hours=1))))

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _bad(_: Request, exc: RequestValidationError) -> Response:
        return from_request_validation(exc.errors()).response()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as c:
        yield c


ADMIN = {"Authorization": "Bearer admin-key-0123456789"}
ACME = {"Authorization": "Bearer acme-key-0123456789"}


async def _all(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = await client.get(
            "/api/messages", params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found += body["messages"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


@pytest.mark.parametrize("sort_by", SORT_FIELDS)
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_every_sort_pages_through_everything_once_in_order(
    client: httpx.AsyncClient, sort_by: str, order: str
) -> None:
    found = await _all(client, ADMIN, sort_by=sort_by, sort_order=order, limit=37)
    assert len(found) == N
    assert len({m["id"] for m in found}) == N
    keys = [str(m[sort_by]).lower() if sort_by in ("recipient", "domain") else m[sort_by] for m in found]
    assert keys == sorted(keys, reverse=order == "desc")


async def test_filters_find_what_the_records_say(client: httpx.AsyncClient, synthetic: list[Synthetic]) -> None:
    def final(s: Synthetic) -> str:
        return s.statuses[-1].status

    expect = {s.accepted.id for s in synthetic if s.accepted.tenant == "acme" and final(s) in ("bounced", "scheduled")}
    found = await _all(client, ADMIN, tenant_id="acme", status=["bounced", "scheduled"], limit=50)
    assert {m["id"] for m in found} == expect
    start, end = T0 + timedelta(seconds=50), T0 + timedelta(seconds=150)
    expect = {
        s.accepted.id for s in synthetic if s.accepted.domain == "gmail.test" and start <= s.accepted.received_at <= end
    }
    found = await _all(
        client, ADMIN, domain="gmail.test", created_after=start.isoformat(), created_before=end.isoformat()
    )
    assert {m["id"] for m in found} == expect
    assert expect
    expect = {s.accepted.id for s in synthetic if s.accepted.body.size >= 30_000 and len(s.statuses[-1].attempts) >= 2}
    found = await _all(client, ADMIN, min_size_bytes=30_000, min_attempts=2)
    assert {m["id"] for m in found} == expect
    vip = await _all(client, ADMIN, tags=["billing", "vip"])
    assert {m["id"] for m in vip} == {s.accepted.id for s in synthetic if int(s.accepted.id[3:]) % 3 == 1}
    hard = await _all(client, ADMIN, bounce_type="hard")
    assert {m["id"] for m in hard} == {s.accepted.id for s in synthetic if final(s) == "bounced"}


async def test_search_looks_in_recipient_sender_and_subject(client: httpx.AsyncClient) -> None:
    assert [m["id"] for m in await _all(client, ADMIN, search_query="user42@")] == ["tx-00000042"]
    invoices = await _all(client, ADMIN, search_query="invoice")
    assert invoices
    assert all("invoice" in str(m["headers"]).lower() for m in invoices)
    assert {m["id"] for m in await _all(client, ADMIN, search_query="bounce@globex")} == {
        f"tx-{i:08d}" for i in range(N) if i % 4 == 1
    }


async def test_a_message_shows_every_field_and_its_attempts(
    client: httpx.AsyncClient, synthetic: list[Synthetic]
) -> None:
    s = next(s for s in synthetic if len(s.statuses[-1].attempts) == 2)
    body = (await client.get(f"/api/messages/{s.accepted.id}", headers=ADMIN)).json()
    assert body["status"] == "delivered"
    assert body["num_attempts"] == 2
    assert len(body["attempts"]) == 2
    assert body["smtp_response"]["code"] == 250
    assert body["delivered_at"] is not None
    assert body["headers"]["Subject"] == s.accepted.headers["Subject"]
    assert body["body_hash"] == s.accepted.body.sha256
    assert body["size_bytes"] == s.accepted.body.size
    assert body["attachment_count"] == s.accepted.attachment_count
    assert body["domain"] == s.accepted.domain
    assert body["priority"] == (5 if s.accepted.priority is None else s.accepted.priority)
    assert body["expires_at"].startswith("2026-11-29")  # the default max_age of 7 days
    assert body["max_attempts"] >= 1
    assert body["pool_name"] == "unspecified"


async def test_a_tenant_key_sees_its_own_messages_only(client: httpx.AsyncClient) -> None:
    mine = await _all(client, ACME, limit=100)
    assert mine
    assert {m["tenant_id"] for m in mine} == {"acme"}
    refused = await client.get("/api/messages", params={"tenant_id": "globex"}, headers=ACME)
    assert refused.status_code == 403
    assert refused.json()["errors"] == [{"field": "tenant_id", "message": "not the tenant of this API key"}]
    assert (await client.get("/api/messages/tx-00000001", headers=ACME)).status_code == 404  # globex's
    assert (await client.get("/api/messages/tx-00000000", headers=ACME)).status_code == 200
    metrics = (await client.get("/api/queue/metrics", headers=ACME)).json()
    assert metrics["total_messages"] == len(mine)
    assert (await client.get("/api/queue/metrics", params={"tenant_id": "globex"}, headers=ACME)).status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"sort_by": "nonsense"},
        {"sort_order": "up"},
        {"status": "lost"},
        {"created_after": "2026-12-02T00:00:00Z", "created_before": "2026-12-01T00:00:00Z"},
        {"min_attempts": 5, "max_attempts": 1},
        {"min_size_bytes": 5, "max_size_bytes": 1},
        {"limit": 0},
        {"limit": 5000},
        {"priority": 11},
        {"min_size_bytes": 2**70},
        {"search_query": "!!!"},
        {"created_after": "yesterday"},
        {"offset": 10, "cursor": "abc"},
    ],
)
async def test_bad_parameters_are_422_problems(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    answer = await client.get("/api/messages", params=params, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_bad_cursors_are_400_problems(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/messages", params={"limit": 5}, headers=ADMIN)).json()
    for params in ({"cursor": "garbage!"}, {"cursor": first["next_cursor"], "sort_by": "size_bytes"}):
        answer = await client.get("/api/messages", params=params, headers=ADMIN)
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/messages")).status_code == 401


async def test_a_page_is_stable_under_inserts(client: httpx.AsyncClient, store: MessageStore) -> None:
    first = (await client.get("/api/messages", params={"limit": 10}, headers=ADMIN)).json()
    rng = random.Random(99)
    later = [message(i, rng, T0 + timedelta(days=1)) for i in range(N, N + 20)]  # newer: they sort first
    Projector(store, QueueResolver(CONFIG.queues)).apply([(t, 1, o, v) for t, _, o, v in records(later)])
    second = (
        await client.get("/api/messages", params={"limit": 10, "cursor": first["next_cursor"]}, headers=ADMIN)
    ).json()
    expected = [f"tx-{i:08d}" for i in range(N - 11, N - 21, -1)]
    assert [m["id"] for m in second["messages"]] == expected


async def test_an_older_status_never_replaces_a_newer_one(store: MessageStore, synthetic: list[Synthetic]) -> None:
    s = next(s for s in synthetic if len(s.statuses) > 1)
    projector = Projector(store, QueueResolver(CONFIG.queues))
    projector.apply([(STATUS.name, 5, 0, encode(s.statuses[0]))])
    assert store.get(s.accepted.id)["status"] == s.statuses[-1].status  # type: ignore[index]
    newer = next_version(s.statuses[-1], s.statuses[-1].updated_at, queue_state="suspended")
    projector.apply([(STATUS.name, 5, 1, encode(newer))])
    assert store.get(s.accepted.id)["queue_state"] == "suspended"  # type: ignore[index]


async def test_metrics_count_what_the_records_say(client: httpx.AsyncClient, synthetic: list[Synthetic]) -> None:
    body = (await client.get("/api/queue/metrics", headers=ADMIN)).json()
    finals = [s.statuses[-1].status for s in synthetic]
    assert body["total_messages"] == N
    assert body["messages_by_status"]["delivered"] == finals.count("delivered")
    queued = sum(f in ("scheduled", "deferred") for f in finals)
    assert body["queue_depth"] == queued == sum(body["queue_depth_by_domain"].values())
    assert body["bounces_by_type"]["hard"] == finals.count("bounced")
    delivered, bounced = finals.count("delivered"), finals.count("bounced")
    assert body["bounce_rate"] == pytest.approx(100 * bounced / (delivered + bounced))
    assert set(body["domain_health_scores"]) <= {s.accepted.domain for s in synthetic}
    assert all(0 <= h["score"] <= 100 for h in body["domain_health_scores"].values())
    assert body["messages_last_24h"] == N
    assert body["oldest_message_age"] > 0
    scoped = (await client.get("/api/queue/metrics", params={"campaign_id": "spring"}, headers=ADMIN)).json()
    assert scoped["total_messages"] == sum(s.accepted.campaign == "spring" for s in synthetic)


async def test_a_status_read_before_its_accepted_record_is_completed_by_it(tmp_path: Path) -> None:
    s = MessageStore(tmp_path / "m.sqlite3")
    projector = Projector(s, QueueResolver(CONFIG.queues))
    early = message(5, random.Random(5))
    projector.apply([(STATUS.name, 0, 0, encode(early.statuses[-1]))])  # mail.accepted is read later
    row = s.get(early.accepted.id)
    assert row is not None
    assert (row["recipient"], row["subject"], row["size_bytes"]) == (early.accepted.recipient, "", 0)
    projector.apply([(ACCEPTED.name, 0, 0, encode(early.accepted))])
    row = s.get(early.accepted.id)
    assert row is not None
    assert (row["status"], row["size_bytes"]) == (early.statuses[-1].status, early.accepted.body.size)
    subject = early.accepted.headers["Subject"].split()[0]
    for term in (subject, early.accepted.recipient):
        hits = s.rows("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (f'"{term}"',))
        assert [h[0] for h in hits] == [row["seq"]]  # indexed again with its subject, once


async def test_the_timeline_buckets_each_delivery_at_its_time(
    client: httpx.AsyncClient, synthetic: list[Synthetic]
) -> None:
    """The clock is T0 + 1 h: 12 buckets of 5 minutes; each delivery counted once, in the bucket of its time."""
    answer = await client.get("/api/queue/metrics/timeline", params={"hours": 1, "points": 12}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["bucket_seconds"] == 300
    points = body["points"]
    assert [datetime.fromisoformat(p["at"]) for p in points] == [T0 + timedelta(minutes=5 * i) for i in range(12)]
    expect = [0] * 12
    for s in synthetic:
        last = s.statuses[-1]
        if last.status == "delivered":  # delivered when its last attempt completed
            expect[int((last.attempts[-1].completed_at - T0).total_seconds() // 300)] += 1
    assert [p["delivered"] for p in points] == expect
    assert sum(expect) == sum(s.statuses[-1].status == "delivered" for s in synthetic) > 0
    assert [p["delivery_rate"] for p in points] == [12.0 * n for n in expect]  # per hour from 5 minutes
    assert sum(p["bounced"] for p in points) == sum(s.statuses[-1].status == "bounced" for s in synthetic)
    acme = await client.get("/api/queue/metrics/timeline", params={"tenant_id": "globex"}, headers=ACME)
    assert acme.status_code == 403
    bad = await client.get("/api/queue/metrics/timeline", params={"points": 1}, headers=ADMIN)
    assert bad.status_code == 422
