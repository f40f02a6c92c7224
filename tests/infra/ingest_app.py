"""Ingest's HTTP API in process, for unit tests: the app assembled as `python -m mailstream.ingest` assembles it,
over the in-memory producer, a status view in a temporary SQLite file and a capacity view fed by hand, driven
through ASGI. No broker, no sockets.

What the scheduler would publish (mail.status, mail.queue-stats, mail.source-usage) is handed to the views with
`publish_*`; `project_statuses` feeds the status view what ingest itself wrote to mail.status, as its tailer would.
To run the views' own tail loops instead, `tail_the_bus` puts a `BusTailer` (the bus read as Kafka would be) in
the place of `TopicTailer`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from mailstream.config.model import Config, parse_config
from mailstream.core.clock import ManualClock
from mailstream.events.memory import MemoryBus, MemoryProducer, MemoryTransactions
from mailstream.events.records import QueueStats, Record, SourceUsage, TransactionStatus
from mailstream.events.serde import decode, encode
from mailstream.events.topics import QUEUE_STATS, SOURCE_USAGE, STATUS, TopicSpec
from mailstream.ingest.app import create_app
from mailstream.ingest.audit import Auditor
from mailstream.ingest.audit_view import AuditView, audit_router
from mailstream.ingest.dashboard import dashboard_router
from mailstream.ingest.kumo_admin import kumo_admin_router
from mailstream.ingest.operation_view import OperationView
from mailstream.ingest.queue_api import queue_router
from mailstream.ingest.read_model.projection import TOPICS as READ_MODEL_TOPICS
from mailstream.ingest.status_view import StatusStore, StatusView
from mailstream.intake.capacity_view import CapacityView
from mailstream.intake.submission import Submitter
from mailstream.intake.tenant_policy import TenantPolicies

ADMIN_KEY = "admin-key-0123456789"
ACME_KEY = "acme-key-0123456789"
GLOBEX_KEY = "globex-key-0123456789"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class BusMessage:
    """What the views read of a confluent_kafka.Message."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value


class BusTailer:
    """Stands in for `TopicTailer` (same constructor and methods): every partition of one topic of a MemoryBus,
    from the given offsets (the beginning where none is given), in the order the records were written."""

    def __init__(self, bus: MemoryBus, topic: str, partitions: int, start: dict[int, int]) -> None:
        self.bus, self.topic, self.partitions, self.start = bus, topic, partitions, dict(start)
        self.closed = False
        self._read = 0  # records of the topic looked at
        self._next: dict[int, int] = {}  # per partition, the offset of the next record

    def take(self, max_records: int) -> list[BusMessage]:
        """What poll_batch returns, without its wait when there is nothing."""
        batch = []
        for record in self.bus.read(self.topic, self._read)[:max_records]:
            self._read += 1
            offset = self._next[record.partition] = self._next.get(record.partition, -1) + 1
            if offset >= self.start.get(record.partition, 0):
                batch.append(BusMessage(self.topic, record.partition, offset, record.key, record.value))
        return batch

    async def poll_batch(self, max_records: int = 1000, timeout: float = 0.5) -> list[BusMessage]:
        batch = self.take(max_records)
        if not batch:
            await asyncio.sleep(min(timeout, 0.01))  # as a poll that found nothing waits
        return batch

    async def end_offsets(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for record in self.bus.read(self.topic):
            ends[record.partition] = ends.get(record.partition, 0) + 1
        return ends

    async def reached(self, ends: dict[int, int]) -> bool:
        return all(self._next.get(p, -1) + 1 >= end for p, end in ends.items())

    async def close(self) -> None:
        self.closed = True


class BusSource:
    """Stands in for the read model's `KafkaSource`: both its topics of a MemoryBus, from the given offsets."""

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self._tails: list[BusTailer] = []

    def seek(self, start: dict[tuple[str, int], int]) -> None:
        self._tails = [
            BusTailer(self.bus, topic, partitions, {p: o for (t, p), o in start.items() if t == topic})
            for topic, partitions in READ_MODEL_TOPICS.items()
        ]

    def poll(self, max_records: int, timeout: float) -> list[tuple[str, int, int, bytes | None]]:
        out: list[tuple[str, int, int, bytes | None]] = []
        for tail in self._tails:
            out += [(m.topic(), m.partition(), m.offset(), m.value()) for m in tail.take(max_records - len(out))]
        if not out:
            time.sleep(min(timeout, 0.01))
        return out

    def close(self) -> None:
        self._tails = []


def asgi_client(app: FastAPI, key: str | None = ADMIN_KEY) -> httpx.AsyncClient:
    """A client of `app` through ASGI, with `key` as its bearer token (None: no Authorization header)."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest.test", headers=headers)


def tail_the_bus(monkeypatch: pytest.MonkeyPatch, bus: MemoryBus) -> list[BusTailer]:
    """Make ingest's views tail `bus` instead of Kafka; returns the tailers as they are made."""
    made: list[BusTailer] = []

    def tailer(bootstrap: str, topic: str, partitions: int, start: dict[int, int]) -> BusTailer:
        made.append(BusTailer(bus, topic, partitions, start))
        return made[-1]

    for module in (
        "mailstream.ingest.status_view",
        "mailstream.intake.capacity_view",
        "mailstream.ingest.idempotency",
        "mailstream.intake.suppression_view",
    ):
        monkeypatch.setattr(f"{module}.TopicTailer", tailer)
    monkeypatch.setattr("mailstream.ingest.read_model.projection.KafkaSource", lambda bootstrap: BusSource(bus))
    return made


def ingest_config(status_db: Path, tenants: dict[str, Any] | None = None, **ingest: Any) -> Config:
    """Three keys (an admin, tenants acme and globex); two sources in the default pool, one in globex's; `tenants`
    is the file's `tenants` section."""
    return parse_config(
        {
            "tenants": tenants or {},
            "ingest": {
                "message_id_domain": "ingest.test",
                "status_db": str(status_db),
                "read_model_db": str(status_db.with_name(f"{status_db.stem}-messages.sqlite3")),
                "api_keys": [
                    {"key": ADMIN_KEY, "admin": True},
                    {"key": ACME_KEY, "tenant": "acme"},
                    {"key": GLOBEX_KEY, "tenant": "globex"},
                ],
                **ingest,
            },
            "egress": {
                "sources": [
                    {"name": "mail1", "daily_limit": 100, "from_email": "adam@mail1.test"},
                    {"name": "mail2", "daily_limit": 50},
                    {"name": "globex-ip"},
                ],
                "pools": [
                    {"name": "shared", "entries": [{"name": "mail1"}, {"name": "mail2"}]},
                    {"name": "globex", "entries": [{"name": "globex-ip"}]},
                ],
            },
            "queues": {"egress_pool": "shared", "rules": [{"tenant": "globex", "egress_pool": "globex"}]},
        },
        env={},
    )


@dataclass
class IngestApp:
    config: Config
    producer: MemoryProducer
    transactions: MemoryTransactions  # the accepted/status/Reception (and answer) records, all or nothing
    statuses: StatusView
    capacity: CapacityView
    clock: ManualClock
    app: FastAPI
    audit: AuditView  # the audit trail's projection, fed by the routes' own writes (as a replica reads its own)
    auditor: Auditor  # writes through `transactions`: an action's records and its audit record all or nothing
    results: OperationView  # what stage 1 answers to queue operations (a test applies the outcomes)
    _projected: int = field(default=0)

    @classmethod
    def build(cls, status_db: Path, tenants: dict[str, Any] | None = None, **ingest: Any) -> IngestApp:
        config = ingest_config(status_db, tenants, **ingest)
        clock = ManualClock(T0)
        producer = MemoryProducer()
        statuses = StatusView(StatusStore(config.ingest.status_db), config.ingest.max_waiters)
        capacity = CapacityView()
        transactions = MemoryTransactions(producer)
        submitter = Submitter(
            producer, clock, capacity.refusal, writer=transactions, policies=TenantPolicies(config.tenants)
        )
        audit = AuditView()
        auditor = Auditor(transactions, clock, audit)
        results = OperationView()
        app = create_app(
            config.ingest,
            submitter,
            statuses,
            clock,
            routers=[
                queue_router(config, capacity, producer, clock, statuses, auditor),
                audit_router(config, audit),
                kumo_admin_router(config, capacity, statuses, results, clock, auditor),
                dashboard_router(),
            ],
        )
        app.state.answers.caught_up.set()  # nothing to read back: the answers' tail is not run here
        return cls(config, producer, transactions, statuses, capacity, clock, app, audit, auditor, results)

    def client(self, key: str | None = ADMIN_KEY) -> httpx.AsyncClient:
        return asgi_client(self.app, key)

    def written(self, topic: TopicSpec[Any], kind: type[R]) -> list[tuple[str, R]]:
        """(key, decoded value) of every record on `topic`, in the order they were written."""
        return [((r.key or b"").decode(), decode(r.value, kind)) for r in self.producer.records(topic)]

    async def project_statuses(self) -> set[str]:
        """Apply to the status view what mail.status holds beyond what it has seen; the ids that changed."""
        offsets: dict[int, int] = {}
        batch = []
        for index, record in enumerate(self.producer.records(STATUS)):
            offset = offsets[record.partition] = offsets.get(record.partition, -1) + 1
            if index >= self._projected:
                batch.append((record.partition, offset, decode(record.value, TransactionStatus)))
        self._projected += len(batch)
        return await self.statuses.apply(batch)

    async def publish_status(self, status: TransactionStatus) -> None:
        """A status as scheduler stage 1 writes it, read by the view."""
        await self.producer.send(STATUS, status.id, status)
        await self.project_statuses()

    def publish_stats(self, stats: QueueStats) -> None:
        self.capacity.apply(QUEUE_STATS.name, f"{stats.partition}/{stats.tenant}".encode(), encode(stats))

    def publish_usage(self, usage: SourceUsage) -> None:
        self.capacity.apply(SOURCE_USAGE.name, usage.source.encode(), encode(usage))

    def close(self) -> None:
        self.statuses.store.close()
        self.app.state.answers.store.close()
        self.app.state.render_pool.close()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 body of an error answer, checked for its shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    return body
