"""`python -m mailstream.ingest` assembles the app, its views and its producer, and serves it: checked by running
`main` with uvicorn, the topic check and the producer swapped for stand-ins, then driving the app it would serve
through its lifespan, the views tailing the in-memory bus."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

import mailstream.ingest.__main__ as ingest_main
from mailstream.config.model import Config
from mailstream.events.kafka import Cluster
from mailstream.events.memory import MemoryBus, MemoryProducer, MemoryTransactions
from mailstream.events.topics import PARTITIONS, QUEUE_COMMANDS
from tests.infra.ingest_app import ACME_KEY, asgi_client, ingest_config, tail_the_bus


@dataclass
class Served:
    bus: MemoryBus = field(default_factory=lambda: MemoryBus(PARTITIONS))
    producers: list[MemoryProducer] = field(default_factory=list)
    transactional_ids: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def app(self) -> FastAPI:
        app: FastAPI = self.runs[-1]["app"]
        return app


def serve(monkeypatch: pytest.MonkeyPatch, config: Config, argv: list[str]) -> Served:
    served = Served()

    def producer(bootstrap: Cluster) -> MemoryProducer:
        assert bootstrap == Cluster.of(config.kafka)
        served.producers.append(MemoryProducer(served.bus))
        return served.producers[-1]

    def prepare(service: str, args: object) -> Config:
        assert service == "ingest"
        return config

    monkeypatch.setattr(ingest_main, "prepare", prepare)
    monkeypatch.setattr(ingest_main, "EventProducer", producer)

    def writer(bootstrap: Cluster, transactional_id: str, **options: Any) -> MemoryTransactions:
        served.transactional_ids.append(transactional_id)
        return MemoryTransactions(served.producers[-1])

    monkeypatch.setattr(ingest_main, "TransactionalWriter", writer)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.runs.append({"app": app, **options}))
    tail_the_bus(monkeypatch, served.bus)
    assert ingest_main.main(argv) == 0
    return served


async def test_main_serves_submission_status_and_the_queue_api_over_one_producer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = serve(monkeypatch, ingest_config(tmp_path / "status.sqlite3"), ["--port", "18025"])
    [run] = served.runs
    assert (run["host"], run["port"], run["access_log"]) == ("127.0.0.1", 18025, False)
    [producer] = served.producers
    request = {
        "envelope_sender": "s@acme.test",
        "recipients": [{"email": "r@example.com"}],
        "content": {"subject": "s", "text_body": "t"},
    }
    async with served.app.router.lifespan_context(served.app), asgi_client(served.app, ACME_KEY) as acme:
        tx = (await acme.post("/api/inject/v1", json=request)).json()["transactions"][0]["id"]
        for _ in range(500):  # the status view's tail reads what the submitter wrote to mail.status
            seen = await acme.get(f"/api/transactions/{tx}")
            if seen.status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert seen.status_code == 200, seen.text
        assert seen.json()["status"] == "scheduled"
        assert (await acme.get("/readyz")).status_code == 200
        assert (await acme.post("/api/admin/suspend", json={"campaign": "c"})).status_code == 202
    assert [r.key for r in producer.records(QUEUE_COMMANDS)] == [b"tenant:acme"]
    assert producer.closed  # flushed and closed at shutdown


async def test_main_without_api_keys_still_serves_and_refuses_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ingest_config(tmp_path / "status.sqlite3", api_keys=[])
    served = serve(monkeypatch, config, [])
    assert served.runs[0]["port"] == config.ingest.port
    async with asgi_client(served.app, ACME_KEY) as client:
        assert (await client.get("/api/queue/servers")).status_code == 401
