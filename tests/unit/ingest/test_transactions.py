"""GET /api/transactions/{id}: the status view's record as a long-running operation, with ETag, 304 and wait."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mailstream.events import fixtures
from mailstream.events.records import TransactionStatus
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, T0, IngestApp, problem

GOOD = {
    "envelope_sender": "s@acme.test",
    "recipients": [{"email": "r@example.com"}],
    "content": {"subject": "s", "text_body": "t"},
}


async def injected(ingest: IngestApp) -> str:
    """One transaction of tenant acme, as the status view has it once it read mail.status."""
    async with ingest.client(ACME_KEY) as acme:
        tx: str = (await acme.post("/api/inject/v1", json=GOOD)).json()["transactions"][0]["id"]
    assert await ingest.project_statuses() == {tx}
    return tx


def newer(ingest: IngestApp, tx: str, **changes: object) -> TransactionStatus:
    status = ingest.statuses.get(tx)
    assert status is not None
    return status.model_copy(update={"version": status.version + 1, **changes})


async def test_an_injected_transaction_reads_back_scheduled(ingest: IngestApp) -> None:
    tx = await injected(ingest)
    async with ingest.client(ACME_KEY) as acme:
        response = await acme.get(f"/api/transactions/{tx}")
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"0"'
    body = response.json()
    assert body["name"] == f"transactions/{tx}"
    assert (body["id"], body["version"], body["status"], body["done"]) == (tx, 0, "scheduled", False)
    assert (body["tenant"], body["recipient"], body["queue"]) == ("acme", "r@example.com", "acme@example.com")
    assert body["created_at"] == T0.isoformat().replace("+00:00", "Z")
    assert body["attempts"] == []
    assert body["last_response"] is None


async def test_a_finished_transaction_is_done_with_its_last_response(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    await ingest.publish_status(fixtures.status())
    body = (await admin.get("/api/transactions/tx-1")).json()
    assert (body["status"], body["done"], body["final_reason"]) == ("delivered", True, "delivered")
    assert body["last_response"] == body["attempts"][-1]["response"]
    assert body["last_response"]["code"] == 250


async def test_the_current_version_in_if_none_match_is_304(ingest: IngestApp) -> None:
    tx = await injected(ingest)
    async with ingest.client(ACME_KEY) as acme:
        same = await acme.get(f"/api/transactions/{tx}", headers={"If-None-Match": '"0"'})
        other = await acme.get(f"/api/transactions/{tx}", headers={"If-None-Match": '"7"'})
    assert same.status_code == 304
    assert same.headers["etag"] == '"0"'
    assert same.content == b""
    assert other.status_code == 200


async def test_wait_returns_the_next_version_as_soon_as_it_is_read(ingest: IngestApp) -> None:
    tx = await injected(ingest)
    async with ingest.client(ACME_KEY) as acme:
        poll = asyncio.create_task(acme.get(f"/api/transactions/{tx}?wait=20", headers={"If-None-Match": '"0"'}))
        await asyncio.sleep(0.05)  # the request is waiting (or, on a slow machine, about to: then it finds v1)
        assert not poll.done()
        await ingest.publish_status(newer(ingest, tx, status="ready"))
        response = await asyncio.wait_for(poll, 10)  # woken by the change, well before its 20 s
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json()["status"] == "ready"


async def test_a_change_to_another_transaction_does_not_end_the_wait(ingest: IngestApp) -> None:
    tx = await injected(ingest)
    async with ingest.client(ACME_KEY) as acme:
        poll = asyncio.create_task(acme.get(f"/api/transactions/{tx}?wait=0.3", headers={"If-None-Match": '"0"'}))
        await asyncio.sleep(0.05)
        await ingest.publish_status(fixtures.status())  # tx-1: another transaction
        response = await poll
    assert response.status_code == 304  # timed out on its own version


async def test_wait_is_capped(ingest: IngestApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mailstream.ingest.app.MAX_WAIT_SECONDS", 0.05)
    tx = await injected(ingest)
    async with ingest.client(ACME_KEY) as acme:
        response = await asyncio.wait_for(
            acme.get(f"/api/transactions/{tx}?wait=3600", headers={"If-None-Match": '"0"'}), 10
        )
    assert response.status_code == 304


async def test_wait_without_a_version_or_for_an_invisible_transaction_answers_at_once(ingest: IngestApp) -> None:
    tx = await injected(ingest)
    async with ingest.client(ACME_KEY) as acme:
        plain = await asyncio.wait_for(acme.get(f"/api/transactions/{tx}?wait=30"), 5)
        unknown = await asyncio.wait_for(
            acme.get("/api/transactions/nope?wait=30", headers={"If-None-Match": '"0"'}), 5
        )
    async with ingest.client(GLOBEX_KEY) as globex:
        hidden = await asyncio.wait_for(
            globex.get(f"/api/transactions/{tx}?wait=30", headers={"If-None-Match": '"0"'}), 5
        )
    assert plain.status_code == 200
    assert problem(unknown, 404)["title"] == "Not found"
    problem(hidden, 404)


async def test_wait_must_be_a_number(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    tx = await injected(ingest)
    response = await admin.get(f"/api/transactions/{tx}?wait=soon")
    assert problem(response, 422)["errors"][0]["field"] == "wait"  # FastAPI's own check, answered as a problem
