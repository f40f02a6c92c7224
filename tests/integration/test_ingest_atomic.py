"""Ingest writes a request all or nothing, on a real broker (issue #9): an ingest process SIGKILLed between
writing a request's records and committing them leaves none of them readable, its restart (same transactional
id) clears the way at once, and the client's retry under its Idempotency-Key is accepted exactly once and then
answered from mail.ingest.answers by any replica."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from mailstream.core.clock import system_clock
from mailstream.events.group_commit import TransactionalWriter
from mailstream.events.kafka import EventProducer, ensure_topics
from mailstream.events.records import AcceptedMessage
from mailstream.events.serde import decode
from mailstream.events.topics import ACCEPTED, ALL_TOPICS, STATUS
from mailstream.ingest.app import create_app
from mailstream.ingest.status_view import StatusStore, StatusView
from mailstream.intake.submission import Submitter
from tests.infra.ingest_app import ADMIN_KEY, asgi_client, ingest_config
from tests.infra.topics import read_all

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def request_for(domain: str, count: int = 20) -> dict[str, Any]:
    return {
        "envelope_sender": "s@acme.test",
        "content": {"subject": "s", "text_body": "t"},
        "recipients": [{"email": f"r{i}@{domain}"} for i in range(count)],
    }


class Replica:
    """Ingest as `python -m mailstream.ingest` assembles it (transactional writer, answers tail), in process."""

    def __init__(self, bootstrap: str, db: Path, transactional_id: str) -> None:
        config = ingest_config(db)
        self.bootstrap = bootstrap
        self.producer = EventProducer(bootstrap)
        self.writer = TransactionalWriter(bootstrap, transactional_id)
        self.view = StatusView(StatusStore(db))
        self.app = create_app(
            config.ingest, Submitter(self.producer, system_clock, writer=self.writer), self.view, system_clock
        )
        self._tail: asyncio.Task[None] | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        self._tail = asyncio.create_task(self.app.state.answers.run(self.bootstrap))
        await asyncio.wait_for(self.app.state.answers.caught_up.wait(), 30)
        self.client = asgi_client(self.app, ADMIN_KEY)
        return self.client

    async def __aexit__(self, *_: object) -> None:
        await self.client.aclose()
        assert self._tail is not None
        self._tail.cancel()
        await asyncio.gather(self._tail, return_exceptions=True)
        await self.writer.close()
        await self.producer.close()
        self.view.store.close()
        self.app.state.answers.store.close()
        self.app.state.render_pool.close()


class _DiesAtCommit:
    """A transactional producer that writes and flushes every record of the transaction, then is SIGKILLed
    instead of committing: the worst moment for a request that is not atomic."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def commit_transaction(self, timeout: float) -> None:
        assert self._real.flush(30) == 0  # every record of the request is on the broker, uncommitted
        Path(os.environ["INGEST_TEST_FLUSHED"]).write_text("flushed")
        os.kill(os.getpid(), signal.SIGKILL)


def killed_child(bootstrap: str, db: str, transactional_id: str, body: str) -> None:
    """Run in a subprocess: one request through the real app and writer, killed at the commit."""

    async def run() -> None:
        replica = Replica(bootstrap, Path(db), transactional_id)
        for lane in replica.writer._lanes:
            lane._producer = cast(Any, _DiesAtCommit(lane.ready()))
        async with replica as client:
            await client.post("/api/inject/v1", content=body, headers={"Idempotency-Key": "order-1"})

    asyncio.run(run())


def accepted_for(bootstrap: str, domain: str, isolation: str) -> list[AcceptedMessage]:
    """The domain's records on mail.accepted as a consumer of `isolation` reads them (read_uncommitted: up to the
    high watermark, past an open transaction; read_committed stops at it, and skips what was aborted)."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    reader.assign([TopicPartition(ACCEPTED.name, p, 0) for p in range(ACCEPTED.partitions)])
    found, quiet_since = [], time.monotonic()
    try:
        while time.monotonic() - quiet_since < 2:
            batch = [m for m in reader.consume(1000, 0.2) if m.error() is None]
            if batch:
                quiet_since = time.monotonic()
            found += [msg for m in batch if (msg := decode(m.value(), AcceptedMessage)).domain == domain]
    finally:
        reader.close()
    return found


async def test_a_request_killed_before_its_commit_leaves_nothing_and_its_retry_lands_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    ensure_topics(kafka_bootstrap, ALL_TOPICS)
    domain = f"{uuid.uuid4().hex[:10]}.test"
    transactional_id = f"mailstream-ingest-test-{uuid.uuid4().hex[:8]}"
    body = json.dumps(request_for(domain))
    flushed = tmp_path / "flushed"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from tests.integration.test_ingest_atomic import killed_child; killed_child(*sys.argv[1:])",
        kafka_bootstrap,
        str(tmp_path / "a.sqlite3"),
        transactional_id,
        body,
        cwd=ROOT,
        env={**os.environ, "INGEST_TEST_FLUSHED": str(flushed)},
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
    assert flushed.exists()

    # The records are on the broker but not committed.
    assert len(accepted_for(kafka_bootstrap, domain, "read_uncommitted")) == 20
    started = time.monotonic()
    async with Replica(kafka_bootstrap, tmp_path / "a.sqlite3", transactional_id) as client:  # the restart
        # Its first transaction fences the killed process's and aborts what it left open.
        retried = await client.post("/api/inject/v1", content=body, headers={"Idempotency-Key": "order-1"})
        assert retried.status_code == 200, retried.text
        assert retried.json()["success_count"] == 20
    assert time.monotonic() - started < 20  # not the 60 s transaction timeout
    committed = accepted_for(kafka_bootstrap, domain, "read_committed")
    assert len(committed) == 20  # the killed attempt's 20 are aborted: each recipient once
    assert sorted(m.id for m in committed) == sorted(t["id"] for t in retried.json()["transactions"])
    ids = {m.id for m in committed}
    statuses = [k for _, _, k, _ in read_all(kafka_bootstrap, STATUS.name, STATUS.partitions) if k.decode() in ids]
    assert len(statuses) == 20

    # Another replica, with its own SQLite, answers the retry from mail.ingest.answers.
    async with Replica(kafka_bootstrap, tmp_path / "b.sqlite3", f"{transactional_id}-b") as other:
        replay = await other.post("/api/inject/v1", content=body, headers={"Idempotency-Key": "order-1"})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == retried.content
    assert len(accepted_for(kafka_bootstrap, domain, "read_committed")) == 20


async def test_concurrent_requests_share_transactions_and_each_lands_whole(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    ensure_topics(kafka_bootstrap, ALL_TOPICS)
    domain = f"{uuid.uuid4().hex[:10]}.test"
    replica = Replica(kafka_bootstrap, tmp_path / "c.sqlite3", f"mailstream-ingest-test-{uuid.uuid4().hex[:8]}")
    async with replica as client:
        answers = await asyncio.gather(*(client.post("/api/inject/v1", json=request_for(domain, 3)) for _ in range(32)))
    assert all(a.status_code == 200 for a in answers)
    assert len(accepted_for(kafka_bootstrap, domain, "read_committed")) == 96
    assert 1 <= replica.writer.transactions < 32  # group commit: requests waiting together share one
