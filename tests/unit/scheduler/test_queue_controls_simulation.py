"""Queue controls and the capacity snapshots, run by the in-memory twin of both scheduler stages.

The stages are the code the Kafka processors run; stage 1 reads all four of its inputs here, so
dispatch notices and admin commands travel as they do on the broker.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from mailstream.config.model import parse_config
from mailstream.core.clock import ManualClock
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryProcessor
from mailstream.events.records import (
    AcceptedMessage,
    DeliveryResponse,
    DeliveryTask,
    QueueCommand,
    QueueStats,
    SourceUsage,
    TransactionStatus,
)
from mailstream.events.serde import decode, encode
from mailstream.events.topics import (
    ACCEPTED,
    DELIVERY,
    DISPATCHED,
    EGRESS_STATE,
    PARTITIONS,
    QUEUE_COMMANDS,
    QUEUE_STATE,
    QUEUE_STATS,
    READY,
    RESPONSES,
    SOURCE_USAGE,
    STATUS,
    route_key,
)
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = {
    "egress": {
        "sources": [
            {"name": "mail2", "daily_limit": 100, "from_email": "adam@mail2.test"},
            {"name": "mail3", "daily_limit": 100},
        ],
        "pools": [{"name": "warm", "policy": "most_remaining", "entries": [{"name": "mail2"}, {"name": "mail3"}]}],
    },
    "queues": {"egress_pool": "warm"},
}
QUEUE_INPUTS = INPUTS


class Twin:
    def __init__(
        self,
        config: dict[str, object] = CONFIG,
        bus: MemoryBus | None = None,
        changelogs: tuple[dict[int, dict[bytes, bytes]], dict[int, dict[bytes, bytes]]] | None = None,
    ) -> None:
        policies = Policies(parse_config(config, env={}))
        self.bus = bus or MemoryBus(PARTITIONS)
        self.queue_stage, self.egress_stage = QueueStage(policies), EgressStage(policies)
        # A restart: state comes back from the changelogs, inputs are not replayed.
        queue_state, egress_state = changelogs if changelogs is not None else (None, None)
        self.queues = MemoryProcessor(
            self.bus, QUEUE_INPUTS, self.queue_stage, resume_from=queue_state, changelog=QUEUE_STATE
        )
        self.egress = MemoryProcessor(
            self.bus, [READY.name], self.egress_stage, resume_from=egress_state, changelog=EGRESS_STATE
        )
        if changelogs is None:  # stage 2 first settles its egress grouping (every partition tells every other), as a
            # worker does in its first ticks, so that a scenario starts with egress open
            self.egress.tick(START)
            self.egress.step(START)
        self.sent: list[DeliveryTask] = []
        self._tasks_read = len(self.bus.read(DELIVERY.name))
        self.answer = True

    def submit(self, n: int, at: datetime, **changes: object) -> list[str]:
        ids = []
        for i in range(n):
            msg: AcceptedMessage = fixtures.accepted().model_copy(
                update={
                    "id": uuid.uuid4().hex,
                    "send_at": None,
                    "received_at": at,
                    "recipient": f"r{i}@example.com",
                    **changes,
                }
            )
            self.bus.send(ACCEPTED.name, route_key(msg.tenant, msg.queue).encode(), encode(msg))
            ids.append(msg.id)
        return ids

    def command(
        self, at: datetime, action: str, *, broadcast: bool = False, issued_by: str = "admin", **scope: object
    ) -> None:
        cmd = QueueCommand(id=uuid.uuid4().hex, action=action, issued_at=at, issued_by=issued_by, **scope)
        key = route_key(cmd.tenant, cmd.queue or "").encode()
        for p in range(PARTITIONS) if broadcast else [None]:
            self.bus.send(QUEUE_COMMANDS.name, key, encode(cmd), p)
        self.queues.step(at)  # read it now: Kafka does not order records across input topics either

    def run(self, clock: ManualClock, until: datetime, step: timedelta = timedelta(minutes=1)) -> None:
        while clock() < until:
            self.step(clock())
            clock.advance(step)

    def step(self, now: datetime) -> None:
        for proc in (self.queues, self.egress):
            proc.step(now)
            proc.tick(now)
        self.queues.step(now)  # the dispatch notices
        if self.answer:
            self.deliver(now)
        self.queues.step(now)

    def deliver(self, now: datetime) -> None:
        fresh = self.bus.read(DELIVERY.name, self._tasks_read)
        self._tasks_read += len(fresh)
        for record in fresh:
            task = decode(record.value, DeliveryTask)
            self.sent.append(task)
            answer = DeliveryResponse(
                id=task.id,
                attempt=task.attempt,
                attempt_id=task.attempt_id,
                queue=task.queue,
                outcome="DELIVERED",
                response=fixtures.OK_250,
                egress_source=task.egress_source,
                egress_path=task.egress_path,
                started_at=now,
                completed_at=now,
            )
            self.bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(answer))

    def history(self, tx_id: str) -> list[tuple[int, str]]:
        return [
            (s.version, s.status)
            for r in self.bus.read(STATUS.name)
            if (s := decode(r.value, TransactionStatus)).id == tx_id
        ]

    def statuses(self, ids: list[str]) -> Counter[str]:
        latest: dict[str, TransactionStatus] = {}
        for record in self.bus.read(STATUS.name):
            s = decode(record.value, TransactionStatus)
            if s.id not in latest or s.version > latest[s.id].version:
                latest[s.id] = s
        return Counter(latest[i].status if i in latest else "scheduled" for i in ids)

    def stats(self) -> dict[str, QueueStats]:
        """The latest record of each key that says something (a tenant's unused slots are empty)."""
        latest = {r.key.decode(): decode(r.value, QueueStats) for r in self.bus.read(QUEUE_STATS.name) if r.key}
        return {k: s for k, s in latest.items() if s.rows or s.suspensions}

    def usage(self) -> dict[str, SourceUsage]:
        return {r.key.decode(): decode(r.value, SourceUsage) for r in self.bus.read(SOURCE_USAGE.name) if r.key}

    def changelogs(self) -> tuple[dict[int, dict[bytes, bytes]], dict[int, dict[bytes, bytes]]]:
        return self.queues.out.changelog, self.egress.out.changelog


def counts(twin: Twin, tenant: str = "acme") -> Counter[str]:
    total: Counter[str] = Counter()
    for stats in twin.stats().values():
        if stats.tenant == tenant:
            for row in stats.rows:
                total.update(row.counts)
    return total


def test_status_is_in_delivery_between_the_task_and_its_response() -> None:
    twin = Twin()
    twin.answer = False
    [tx] = twin.submit(1, START)
    twin.step(START)
    assert twin.history(tx) == [(1, "ready"), (2, "in_delivery")]
    twin.deliver(START)
    twin.queues.step(START)
    assert twin.history(tx) == [(1, "ready"), (2, "in_delivery"), (3, "delivered")]


def test_a_notice_read_after_the_response_changes_nothing() -> None:
    twin = Twin()
    twin.answer = False
    [tx] = twin.submit(1, START)
    twin.queues.step(START)
    twin.egress.step(START)  # task and notice emitted; the sink answers before stage 1 reads the notice
    twin.deliver(START)
    twin.queues.read_upto[DISPATCHED.name] = 0  # feed responses first: the order across inputs is not fixed
    inputs = twin.queues.inputs
    twin.queues.inputs = (RESPONSES.name, DISPATCHED.name)
    twin.queues.step(START)
    twin.queues.inputs = inputs
    assert twin.history(tx) == [(1, "ready"), (2, "delivered")]


def test_suspended_campaign_keeps_its_messages_until_resumed() -> None:
    clock = ManualClock(START)
    twin = Twin()
    twin.command(START, "suspend", tenant="acme", campaign="spring", reason="complaints")
    spring = twin.submit(5, START, campaign="spring", queue="spring:acme@example.com")
    autumn = twin.submit(5, START, campaign="autumn", queue="autumn:acme@example.com")
    twin.run(clock, START + timedelta(minutes=30))
    assert twin.statuses(spring) == {"suspended": 5}
    assert twin.statuses(autumn) == {"delivered": 5}
    assert {t.id for t in twin.sent} == set(autumn)
    assert twin.history(spring[0]) == [(1, "suspended")]  # at once: accepted into a suspended queue
    [stats] = [s for s in twin.stats().values() if s.tenant == "acme"]
    assert [(s.campaign, s.reason) for s in stats.suspensions] == [("spring", "complaints")]
    assert counts(twin) == {"suspended": 5, "delivered": 5}

    twin.command(clock(), "resume", tenant="acme", campaign="spring")
    twin.run(clock, clock() + timedelta(minutes=5))
    assert twin.statuses(spring) == {"delivered": 5}
    assert [st for _, st in twin.history(spring[0])] == ["suspended", "scheduled", "ready", "in_delivery", "delivered"]
    assert counts(twin) == {"delivered": 10}
    assert all(not s.suspensions for s in twin.stats().values())


def test_suspending_queued_messages_takes_them_out_of_their_lanes() -> None:
    clock = ManualClock(START)
    config = {**CONFIG, "tenants": {"acme": {"max_message_rate": "1/min"}}}
    twin = Twin(config)
    ids = twin.submit(10, START)
    twin.run(clock, START + timedelta(minutes=3))  # one a minute: three went
    twin.command(clock(), "suspend", tenant="acme")
    twin.run(clock, START + timedelta(minutes=30))
    assert twin.statuses(ids) == {"suspended": 7, "delivered": 3}


def test_a_suspension_with_a_duration_lifts_itself() -> None:
    clock = ManualClock(START)
    twin = Twin()
    twin.command(START, "suspend", tenant="acme", until=START + timedelta(hours=2))
    ids = twin.submit(4, START)
    twin.run(clock, START + timedelta(hours=1, minutes=59))
    assert twin.statuses(ids) == {"suspended": 4}
    twin.run(clock, START + timedelta(hours=2, minutes=2))
    assert twin.statuses(ids) == {"delivered": 4}


def test_suspended_messages_still_expire() -> None:
    clock = ManualClock(START)
    twin = Twin({**CONFIG, "queues": {"egress_pool": "warm", "max_age": "6h"}})
    twin.command(START, "suspend", tenant="acme")
    ids = twin.submit(3, START)
    twin.run(clock, START + timedelta(hours=7))
    assert twin.statuses(ids) == {"expired": 3}
    assert counts(twin) == {"expired": 3}


def test_a_tenant_neither_lifts_nor_rewrites_an_admin_suspension() -> None:
    clock = ManualClock(START)
    twin = Twin()
    twin.command(START, "suspend", tenant="acme", campaign="spring", reason="abuse report")
    ids = twin.submit(2, START)
    twin.command(START, "resume", issued_by="tenant:acme", tenant="acme", campaign="spring")
    twin.command(
        START, "suspend", issued_by="tenant:acme", tenant="acme", campaign="spring", until=START + timedelta(minutes=1)
    )
    twin.run(clock, START + timedelta(minutes=10))
    assert twin.statuses(ids) == {"suspended": 2}
    [stats] = [s for s in twin.stats().values() if s.tenant == "acme"]
    assert [(s.reason, s.until, s.issued_by) for s in stats.suspensions] == [("abuse report", None, "admin")]
    twin.command(clock(), "resume", tenant="acme", campaign="spring")
    twin.run(clock, clock() + timedelta(minutes=5))
    assert twin.statuses(ids) == {"delivered": 2}


def test_a_domain_suspension_sent_to_every_partition_covers_every_tenant() -> None:
    clock = ManualClock(START)
    twin = Twin()
    twin.command(START, "suspend", broadcast=True, domain="example.com")
    acme = twin.submit(2, START)
    globex = twin.submit(2, START, tenant="globex", queue="spring:globex@example.com")
    other = twin.submit(2, START, domain="other.test", queue="spring:acme@other.test")
    twin.run(clock, START + timedelta(minutes=10))
    assert twin.statuses(acme + globex) == {"suspended": 4}
    assert twin.statuses(other) == {"delivered": 2}


def test_suspensions_and_counts_survive_a_restart() -> None:
    clock = ManualClock(START)
    twin = Twin()
    twin.command(START, "suspend", tenant="acme", campaign="spring")
    held = twin.submit(3, START)
    sent = twin.submit(4, START, campaign="autumn", queue="autumn:acme@example.com")
    twin.run(clock, START + timedelta(minutes=10))
    before = counts(twin)
    assert before == {"suspended": 3, "delivered": 4}

    again = Twin(bus=twin.bus, changelogs=twin.changelogs())
    again.run(clock, clock() + timedelta(minutes=10))
    assert again.statuses(held) == {"suspended": 3}
    assert counts(again) == before  # republished from restored state
    again.command(clock(), "resume", tenant="acme", campaign="spring")
    again.run(clock, clock() + timedelta(minutes=5))
    assert again.statuses(held + sent) == {"delivered": 7}
    assert counts(again) == {"delivered": 7}


def test_source_usage_is_published_when_it_changes() -> None:
    clock = ManualClock(START)
    twin = Twin()
    twin.submit(30, START)
    twin.run(clock, START + timedelta(minutes=5))
    usage = twin.usage()
    assert {k: (u.day, u.used, u.daily_limit) for k, u in usage.items()} == {
        "mail2": ("2026-11-23", 15, 100),
        "mail3": ("2026-11-23", 15, 100),
    }  # most remaining: turns
    published = len(twin.bus.read(SOURCE_USAGE.name))
    twin.run(clock, clock() + timedelta(minutes=30))
    assert len(twin.bus.read(SOURCE_USAGE.name)) == published  # nothing changed, nothing republished
