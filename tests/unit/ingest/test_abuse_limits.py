"""One API key cannot take the replica from the others (issue #9): a rate limit and a cap on requests in progress
per key, and bounded long-poll waiters woken only by their own transaction; each refusal is 429 + Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mailstream.events.records import TransactionStatus
from mailstream.ingest.status_view import StatusView
from tests.infra.ingest_app import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, IngestApp, problem

REQUEST: dict[str, Any] = {
    "envelope_sender": "s@acme.test",
    "recipients": [{"email": "r@example.com"}],
    "content": "Subject: s\n\nt\n",
}


def limited(tmp_path: Path, **ingest: Any) -> IngestApp:
    built = IngestApp.build(tmp_path / "status.sqlite3", **ingest)
    keys = built.config.ingest.api_keys
    assert [k.key and k.key.get_secret_value() for k in keys] == [ADMIN_KEY, ACME_KEY, GLOBEX_KEY]
    return built


@pytest.fixture
def rated(tmp_path: Path) -> Iterator[IngestApp]:
    built = limited(tmp_path, rate_limit="2/s")
    yield built
    built.close()


async def test_a_key_past_its_rate_is_429_with_retry_after_and_others_go_on(rated: IngestApp) -> None:
    async with rated.client(ACME_KEY) as acme, rated.client(GLOBEX_KEY) as globex:
        assert [(await acme.post("/api/inject/v1", json=REQUEST)).status_code for _ in range(2)] == [200, 200]
        refused = await acme.post("/api/inject/v1", json=REQUEST)
        body = problem(refused, 429)
        assert "2/s" in body["detail"]
        assert refused.headers["retry-after"] == "1"
        assert (await globex.post("/api/inject/v1", json=REQUEST)).status_code == 200  # its own budget
        rated.clock.advance(timedelta(seconds=1))
        assert (await acme.post("/api/inject/v1", json=REQUEST)).status_code == 200
    assert len(rated.producer.records("mail.accepted")) == 4


async def test_a_keys_own_limit_replaces_the_default(tmp_path: Path) -> None:
    built = IngestApp.build(
        tmp_path / "status.sqlite3",
        rate_limit="1/s",
        api_keys=[{"key": ADMIN_KEY, "admin": True, "rate_limit": "100/s"}, {"key": ACME_KEY, "tenant": "acme"}],
    )
    try:
        async with built.client(ADMIN_KEY) as admin, built.client(ACME_KEY) as acme:
            assert [(await admin.post("/api/inject/v1", json=REQUEST)).status_code for _ in range(5)] == [200] * 5
            assert [(await acme.post("/api/inject/v1", json=REQUEST)).status_code for _ in range(2)] == [200, 429]
    finally:
        built.close()


async def test_requests_in_progress_past_the_cap_are_429(tmp_path: Path) -> None:
    built = IngestApp.build(tmp_path / "status.sqlite3", max_requests_in_progress=2)
    built.transactions.commit_delay = 0.3
    try:
        async with built.client(ACME_KEY) as acme, built.client(GLOBEX_KEY) as globex:
            answers = await asyncio.gather(
                *(acme.post("/api/inject/v1", json=REQUEST) for _ in range(3)),
                globex.post("/api/inject/v1", json=REQUEST),
            )
            later = await acme.post("/api/inject/v1", json=REQUEST)
    finally:
        built.close()
    assert sorted(a.status_code for a in answers[:3]) == [200, 200, 429]
    assert answers[3].status_code == 200
    assert later.status_code == 200  # the slots are given back


async def injected(ingest: IngestApp) -> str:
    async with ingest.client() as admin:
        tx: str = (await admin.post("/api/inject/v1", json=REQUEST)).json()["transactions"][0]["id"]
    await ingest.project_statuses()
    return tx


async def test_long_polls_past_the_keys_cap_are_429(tmp_path: Path) -> None:
    built = IngestApp.build(tmp_path / "status.sqlite3", max_waiters_per_key=2)
    try:
        tx = await injected(built)
        async with built.client() as admin, built.client(ACME_KEY) as acme:
            waits = [
                asyncio.create_task(admin.get(f"/api/transactions/{tx}?wait=30", headers={"If-None-Match": '"0"'}))
                for _ in range(2)
            ]
            await asyncio.sleep(0.1)
            third = await admin.get(f"/api/transactions/{tx}?wait=30", headers={"If-None-Match": '"0"'})
            assert problem(third, 429)["title"] == "Too many requests"
            assert (await acme.get(f"/api/transactions/{tx}?wait=0")).status_code in (200, 404)
            status = built.statuses.get(tx)
            assert status is not None
            await built.publish_status(status.model_copy(update={"version": 1, "status": "ready"}))
            done = await asyncio.wait_for(asyncio.gather(*waits), 5)
    finally:
        built.close()
    assert [d.json()["status"] for d in done] == ["ready", "ready"]


async def test_a_waiter_is_woken_by_its_own_transaction_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = IngestApp.build(tmp_path / "status.sqlite3")
    reads: list[str] = []
    real_get = StatusView.get

    def counted(view: StatusView, tx_id: str) -> TransactionStatus | None:
        reads.append(tx_id)
        return real_get(view, tx_id)

    try:
        mine, other = await injected(built), await injected(built)
        monkeypatch.setattr(StatusView, "get", counted)
        waiting = asyncio.create_task(built.statuses.wait_newer(mine, 0, 5))
        await asyncio.sleep(0.05)
        reads.clear()
        for version in range(1, 21):  # twenty changes to another transaction
            status = real_get(built.statuses, other)
            assert status is not None
            await built.publish_status(status.model_copy(update={"version": version}))
        assert mine not in reads  # not woken: it did not re-read its transaction
        status = real_get(built.statuses, mine)
        assert status is not None
        await built.publish_status(status.model_copy(update={"version": 1, "status": "ready"}))
        woken = await asyncio.wait_for(waiting, 5)
    finally:
        built.close()
    assert woken is not None
    assert woken.status == "ready"


async def test_the_replica_bounds_its_waiters(tmp_path: Path) -> None:
    built = IngestApp.build(tmp_path / "status.sqlite3", max_waiters=1)
    try:
        tx = await injected(built)
        async with built.client() as admin:
            first = asyncio.create_task(admin.get(f"/api/transactions/{tx}?wait=1", headers={"If-None-Match": '"0"'}))
            await asyncio.sleep(0.1)
            second = await admin.get(f"/api/transactions/{tx}?wait=1", headers={"If-None-Match": '"0"'})
            assert (await first).status_code == 304  # waited its second out: nothing changed
    finally:
        built.close()
    assert "limit" in problem(second, 429)["detail"]
