"""A request is written all or nothing, within its deadline, and a retry with the same Idempotency-Key creates
nothing twice and is answered what the first was (issue #9). On the in-memory twin of the transactional writer;
tests/integration/test_ingest_atomic.py proves the same on a real broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailstream.events.records import AcceptedMessage, IdempotentAnswer
from mailstream.events.topics import ACCEPTED, ANSWERS, BODIES, EVENTS, STATUS
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, IngestApp, problem, tail_the_bus
from tests.infra.until import until

REQUEST: dict[str, Any] = {
    "envelope_sender": "s@acme.test",
    "content": {"subject": "s", "text_body": "t"},
    "recipients": [{"email": f"r{i}@example.com"} for i in range(5)],
}


def records_of_acceptance(ingest: IngestApp) -> int:
    return sum(len(ingest.producer.records(topic)) for topic in (ACCEPTED, STATUS, EVENTS))


async def test_an_aborted_transaction_leaves_no_recipient_accepted(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    ingest.transactions.fail_next = 1
    body = problem(await admin.post("/api/inject/v1", json=REQUEST), 503)
    assert body["detail"].endswith("nothing was accepted")
    assert records_of_acceptance(ingest) == 0  # a body may be there: nothing refers to it
    retried = (await admin.post("/api/inject/v1", json=REQUEST)).json()
    assert retried["success_count"] == 5
    assert len(ingest.written(ACCEPTED, AcceptedMessage)) == 5
    assert ingest.transactions.transactions == 1  # the request's 15 records in one transaction


async def test_a_retry_with_the_same_key_is_answered_the_same_and_creates_nothing(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "order-1234"}
    first = await admin.post("/api/inject/v1", json=REQUEST, headers=headers)
    again = await admin.post("/api/inject/v1", json=REQUEST, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(ingest.written(ACCEPTED, AcceptedMessage)) == 5
    [(key, answer)] = ingest.written(ANSWERS, IdempotentAnswer)
    assert key.endswith("/order-1234")
    assert answer.answer.encode() == first.content  # written in the same transaction as the records
    assert ingest.transactions.transactions == 1


async def test_a_key_is_scoped_to_its_api_key_and_bound_to_its_body(ingest: IngestApp) -> None:
    headers = {"Idempotency-Key": "k1"}
    acme_request = {**REQUEST, "envelope_sender": "s@acme.test"}
    async with ingest.client(ACME_KEY) as acme, ingest.client(GLOBEX_KEY) as globex:
        assert (await acme.post("/api/inject/v1", json=acme_request, headers=headers)).status_code == 200
        assert (await globex.post("/api/inject/v1", json=acme_request, headers=headers)).status_code == 200
        other = await acme.post(
            "/api/inject/v1", json={**acme_request, "recipients": [{"email": "x@example.com"}]}, headers=headers
        )
    assert problem(other, 422)["errors"][0]["field"] == "Idempotency-Key"
    assert len(ingest.written(ACCEPTED, AcceptedMessage)) == 10


async def test_a_bad_key_is_400(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    for key in ("", "x" * 256, "two words"):
        body = problem(await admin.post("/api/inject/v1", json=REQUEST, headers={"Idempotency-Key": key}), 400)
        assert body["errors"][0]["field"] == "Idempotency-Key"
    assert ingest.producer.bus.topics == {}


async def test_a_request_that_failed_is_processed_again_under_its_key(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    ingest.producer.unavailable = "Local: Broker transport failure"
    problem(await admin.post("/api/inject/v1", json=REQUEST, headers=headers), 503)
    ingest.producer.unavailable = None
    assert (await admin.post("/api/inject/v1", json=REQUEST, headers=headers)).json()["success_count"] == 5
    assert len(ingest.written(ACCEPTED, AcceptedMessage)) == 5


async def test_an_answer_is_kept_when_every_recipient_failed(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "all-bad"}
    request = {**REQUEST, "recipients": [{"email": "no-at-sign"}]}
    first = await admin.post("/api/inject/v1", json=request, headers=headers)
    again = await admin.post("/api/inject/v1", json=request, headers=headers)
    assert first.json()["fail_count"] == 1
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_commit_past_the_deadline_keeps_the_key_until_its_outcome_is_known(tmp_path: Path) -> None:
    ingest = IngestApp.build(tmp_path / "status.sqlite3", request_deadline="0.2s")
    ingest.transactions.commit_gate = landed = asyncio.Event()
    headers = {"Idempotency-Key": "slow"}
    try:
        async with ingest.client() as admin:
            body = problem(await admin.post("/api/inject/v1", json=REQUEST, headers=headers), 503)
            assert not ingest.written(ACCEPTED, AcceptedMessage)  # answered at the deadline, before the commit
            assert "may or may not" in body["detail"]
            assert "Retry-After" in (await admin.post("/api/inject/v1", json=REQUEST, headers=headers)).headers
            landed.set()  # the commit lands
            await until(lambda: len(ingest.written(ACCEPTED, AcceptedMessage)) == 5)
            replay = await admin.post("/api/inject/v1", json=REQUEST, headers=headers)
    finally:
        ingest.close()
    assert replay.headers["idempotent-replayed"] == "true"
    ids = [t["id"] for t in replay.json()["transactions"]]
    assert ids == [m.id for _, m in ingest.written(ACCEPTED, AcceptedMessage)]
    assert len(ingest.written(ACCEPTED, AcceptedMessage)) == 5


async def test_a_log_that_takes_no_write_is_503_within_the_deadline(tmp_path: Path) -> None:
    ingest = IngestApp.build(tmp_path / "status.sqlite3", request_deadline="0.3s")
    ingest.transactions.commit_delay = 30
    try:
        async with ingest.client() as admin:
            started = time.monotonic()
            response = await admin.post("/api/inject/v1", json=REQUEST)
    finally:
        ingest.close()
    problem(response, 503)
    assert response.headers["retry-after"] == "5"
    assert time.monotonic() - started < 10  # at the 0.3 s deadline, not after the 30 s commit


async def test_answers_survive_a_restart_and_reach_another_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"Idempotency-Key": "order-77"}
    first = IngestApp.build(tmp_path / "a.sqlite3")
    async with first.client() as admin:
        answered = await admin.post("/api/inject/v1", json=REQUEST, headers=headers)
    first.close()
    restarted = IngestApp.build(tmp_path / "a.sqlite3")  # the same replica's SQLite
    restarted.producer.bus = first.producer.bus
    other = IngestApp.build(tmp_path / "b.sqlite3")  # another replica: reads the answer from mail.ingest.answers
    other.producer.bus = first.producer.bus
    answers = other.app.state.answers
    answers.caught_up.clear()
    tail_the_bus(monkeypatch, first.producer.bus)
    tail = asyncio.create_task(answers.run("bus"))
    try:
        async with other.client() as admin:
            problem(await admin.post("/api/inject/v1", json=REQUEST, headers=headers), 503)  # not read back yet
            await asyncio.wait_for(answers.caught_up.wait(), 5)
            elsewhere = await admin.post("/api/inject/v1", json=REQUEST, headers=headers)
        async with restarted.client() as admin:
            again = await admin.post("/api/inject/v1", json=REQUEST, headers=headers)
    finally:
        tail.cancel()
        restarted.close()
        other.close()
    assert again.content == elsewhere.content == answered.content
    assert len(first.producer.records(ACCEPTED)) == 5
    assert len(first.producer.records(BODIES)) == 5  # one per recipient (each has its own Message-ID), once
