"""The message read model on a real broker: records on mail.accepted and mail.status, the projection (a process
of its own, SIGKILLed mid-stream, then started again), GET /api/messages and /api/queue/metrics on what it built.
Every record is applied exactly once: no row, tag or full-text entry lost or doubled, and the stored offsets are
the topics' ends."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, Producer
from fastapi import FastAPI, Request, Response

from mailstream.config.model import Config
from mailstream.core.clock import ManualClock
from mailstream.events.kafka import ensure_topics, producer_config
from mailstream.events.topics import ACCEPTED, STATUS, route_key
from mailstream.ingest.problems import Problem
from mailstream.ingest.read_model.api import read_model_router
from mailstream.ingest.read_model.projection import Projection, Projector
from mailstream.ingest.read_model.rows import QueueResolver
from mailstream.ingest.read_model.store import MessageStore
from tests.infra.ingest_app import ACME_KEY, ADMIN_KEY, asgi_client
from tests.infra.read_model_records import T0, Synthetic, message

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
N = 1500
CONFIG = Config.model_validate(
    {"ingest": {"api_keys": [{"key": ADMIN_KEY, "admin": True}, {"key": ACME_KEY, "tenant": "acme"}]}}
)
# The projection as ingest runs it, alone in a process the test can SIGKILL; small batches, so many commits.
CHILD = """
import sys, time
from pathlib import Path
from typing import Any
from mailstream.config.scheduling import QueueDefaults
from mailstream.ingest.read_model.projection import Projection, Projector
from mailstream.ingest.read_model.rows import QueueResolver
from mailstream.ingest.read_model.store import MessageStore
projection = Projection(Projector(MessageStore(Path(sys.argv[2])), QueueResolver(QueueDefaults())), sys.argv[1], 40)
projection.run()
"""


# Offset after the last record `published` wrote, by (topic, partition). Not the high watermark: other tests
# write these topics transactionally on a shared broker, and a commit marker after the last record takes an
# offset no consumed record ever reaches.
WRITTEN: dict[tuple[str, int], int] = {}


def _written(err: object, msg: Message) -> None:
    if err is None:
        key = (str(msg.topic()), int(msg.partition() or 0))
        WRITTEN[key] = max(WRITTEN.get(key, 0), int(msg.offset() or 0) + 1)


@pytest.fixture(scope="module")
def published(kafka_bootstrap: str) -> tuple[str, list[Synthetic]]:
    """N messages of tenants unique to this run, each accepted record then its statuses, as the services key them."""
    ensure_topics(kafka_bootstrap, [ACCEPTED, STATUS])
    run = uuid.uuid4().hex[:8]
    rng = random.Random(3)
    made = []
    for i in range(N):
        s = message(i, rng)
        tenant = f"{s.accepted.tenant}-{run}"
        mine = {"id": f"{run}-{s.accepted.id}", "tenant": tenant, "sender": f"bounce@{tenant}.test"}
        acc = s.accepted.model_copy(update=mine)
        sts = tuple(st.model_copy(update=mine) for st in s.statuses)
        made.append(Synthetic(acc, sts))
    producer = Producer(producer_config(kafka_bootstrap))
    for s in made:
        producer.produce(
            ACCEPTED.name,
            ACCEPTED.encode(s.accepted),
            route_key(s.accepted.tenant, s.accepted.queue),
            on_delivery=_written,
        )
        for st in s.statuses:
            producer.produce(STATUS.name, STATUS.encode(st), st.id, on_delivery=_written)
        producer.poll(0)
    assert producer.flush(30) == 0
    return run, made


def _mine(db: Path, run: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM messages WHERE id LIKE ?", (f"{run}-%",)).fetchone()[0])


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def store(
    kafka_bootstrap: str, published: tuple[str, list[Synthetic]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessageStore]:
    """The projection killed mid-stream once, then run to the end: the store the API tests read."""
    run, made = published
    db = tmp_path_factory.mktemp("read-model") / "messages.sqlite3"
    MessageStore(db).close()  # the schema, so the witness can count from the start
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, kafka_bootstrap, str(db)], cwd=ROOT, env=env)
    try:
        _wait(lambda: _mine(db, run) >= N // 3, 120, "the first process to project a third of the messages")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert _mine(db, run) < N, "the kill came too late to be mid-stream"
    s = MessageStore(db)
    projection = Projection(Projector(s, QueueResolver(CONFIG.queues)), kafka_bootstrap, batch=500)
    projection.start()
    try:
        finals = {m.accepted.id: m.statuses[-1].version for m in made}

        def done() -> bool:
            rows = s.rows("SELECT id, status_version FROM messages WHERE id LIKE ?", (f"{run}-%",))
            return len(rows) == N and all(finals[r[0]] == r[1] for r in rows)

        _wait(done, 120, "the restarted projection to apply every message's last status")
        assert WRITTEN, "delivery reports of what the test wrote"
        _wait(lambda: all(s.offsets().get(k, 0) >= v for k, v in WRITTEN.items()), 60, "the offsets past our records")
    finally:
        projection.stop()
    yield s
    s.close()


def test_a_kill_mid_stream_loses_and_doubles_nothing(
    store: MessageStore, published: tuple[str, list[Synthetic]]
) -> None:
    run, made = published
    like = (f"{run}-%",)
    assert store.rows("SELECT count(*), count(DISTINCT id) FROM messages WHERE id LIKE ?", like)[0][:] == (N, N)
    expected_tags = sum(len(m.accepted.metadata.get("tags", "[]").split(",")) for m in made if m.accepted.metadata)
    tags = store.rows("SELECT count(*) FROM tags JOIN messages USING (seq) WHERE id LIKE ?", like)[0][0]
    assert tags == expected_tags
    # Every row is in the full-text index once: a doubled entry would match twice.
    entries = store.rows("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (f'"{run}"',))[0][0]
    assert entries == N  # the run's id is in every sender (bounce@<tenant>-<run>.test) and nowhere else
    assert store.rows("SELECT count(*) FROM messages WHERE fts != 1")[0][0] == 0
    with sqlite3.connect(store.path) as db:  # the index agrees with the rows, entry for entry
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")


async def test_search_filters_sorts_and_pages_on_the_projected_rows(
    store: MessageStore, published: tuple[str, list[Synthetic]]
) -> None:
    run, made = published
    application = FastAPI()
    application.include_router(read_model_router(CONFIG, store, ManualClock(T0)))

    @application.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return exc.response()

    async with asgi_client(application, ADMIN_KEY) as client:
        tenant = f"acme-{run}"
        expect = sorted(
            (m for m in made if m.accepted.tenant == tenant and m.statuses[-1].status == "delivered"),
            key=lambda m: (-m.accepted.body.size, m.accepted.id),
        )
        got: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"tenant_id": tenant, "status": "delivered", "sort_by": "size_bytes", "limit": 40}
            answer = await client.get("/api/messages", params={**params, **({"cursor": cursor} if cursor else {})})
            assert answer.status_code == 200, answer.text
            got += [m["id"] for m in answer.json()["messages"]]
            cursor = answer.json()["next_cursor"]
            if cursor is None:
                break
        sizes = [m.accepted.body.size for m in expect]
        assert sorted(got) == sorted(m.accepted.id for m in expect)
        assert [next(m.accepted.body.size for m in expect if m.accepted.id == i) for i in got] == sizes
        one = made[7].accepted
        found = (await client.get("/api/messages", params={"search_query": one.recipient})).json()["messages"]
        assert [m["id"] for m in found if m["id"].startswith(run)] == [one.id]
    async with asgi_client(application, ACME_KEY) as client:
        # the acme key's tenant is "acme", not this run's tenants: it sees none of them
        answer = await client.get("/api/messages", params={"search_query": run})
        assert answer.status_code == 200
        assert answer.json()["messages"] == []
        assert (await client.get(f"/api/messages/{one.id}")).status_code == 404
