"""Scheduler workers against a real broker: limits spanning several keys stay exact, and no attempt gets a
second delivery task, when one of two workers is SIGKILLed mid-run and the partitions move twice.

Two egress groups (a weighted round-robin pool of three sources, a most-remaining pool of two), each
source capped per day and sending to several sites; two tenants capped per day over several domains.
Names are picked so that each half of the partitions (range assignment gives each of two workers one
half) holds one capped tenant and one egress group: whichever worker dies owns limits in both stages.
More mail is offered than the caps allow; a stand-in delivery worker answers every task DELIVERED.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from mailstream.core.queue_name import QueueName
from mailstream.events.kafka import ensure_topics, producer_config
from mailstream.events.records import (
    AcceptedMessage,
    BodyRef,
    DeliveryResponse,
    DeliveryTask,
    LimitState,
    QueuedMessage,
    ReadyMessage,
    SmtpResponse,
    TransactionStatus,
)
from mailstream.events.serde import decode, encode, schema_name
from mailstream.events.topics import (
    ACCEPTED,
    ALL_TOPICS,
    DELIVERY,
    EGRESS_STATE,
    PARTITIONS,
    QUEUE_STATE,
    READY,
    RESPONSES,
    STATUS,
    route_key,
)
from mailstream.scheduler import egress_keys, queue_keys
from mailstream.scheduler.egress_keys import Held, SourceLimit
from mailstream.scheduler.queue_keys import Message, TenantLimit
from mailstream.scheduler.stage import LimitScope
from tests.infra.logs import log_events
from tests.infra.stack import free_port
from tests.infra.topics import committed_offsets, end_offsets, latest_by_key, partitions_of, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HALF = PARTITIONS // 2

# pool -> policy, [(source, weight, daily cap)]
POOLS = {
    "pa": ("round_robin", [("a1", 2, 40), ("a2", 1, 40), ("a3", 1, 40)]),
    "pb": ("most_remaining", [("b1", 1, 30), ("b2", 1, 50)]),
}
# tenant -> pool, messages offered, tenant daily cap
TENANTS = {"t1": ("pa", 100, 60), "t2": ("pa", 100, None), "t3": ("pb", 80, 50), "t4": ("pb", 60, None)}
# Role -> the half of the partitions its key must fall in.
PLACEMENT = {"t1": 0, "t3": 1, "pa": 0, "pb": 1}
DOMAINS = 5  # not a multiple of the round robin's period (weights 2+1+1), so sources meet more sites
KILL_AFTER_TASKS = 40


# -- the plan ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    tag: str
    names: dict[str, str]  # role (t1, pa, a1, ...) -> the name used in this run
    partitions: dict[str, int]  # placed role -> the partition of its key

    def n(self, role: str) -> str:
        return self.names[role]

    @property
    def pools(self) -> set[str]:
        return {self.n(p) for p in POOLS}

    def domains(self) -> list[str]:
        return [f"d{i}-{self.tag}.test" for i in range(DOMAINS)]


def plan_names(bootstrap: str) -> Plan:
    """Names for this run: unique, and the placed roles' keys in the half of the partitions they need."""
    tag = uuid.uuid4().hex[:8]
    candidates = {role: [f"{role}-{tag}-{i}" for i in range(16)] for role in PLACEMENT}

    def key(role: str, name: str) -> str:  # tenants are placed by route key, pools by egress group (own name)
        return route_key(name, "") if role in TENANTS else name

    placed = partitions_of(bootstrap, [key(r, n) for r, names in candidates.items() for n in names], PARTITIONS)
    names = {
        role: next(n for n in candidates[role] if placed[key(role, n)] // HALF == half)
        for role, half in PLACEMENT.items()
    }
    partitions = {role: placed[key(role, name)] for role, name in names.items()}
    for role in [*TENANTS, *(s for _, entries in POOLS.values() for s, _, _ in entries), "spare"]:
        names.setdefault(role, f"{role}-{tag}")
    return Plan(tag, names, partitions)


def noon_zone() -> str:
    """An Etc/GMT zone where it is about noon now, so no daily reset falls inside the test."""
    east = 12 - datetime.now(UTC).hour  # hours east of UTC; Etc/GMT names invert the sign
    return "Etc/GMT" if east == 0 else f"Etc/GMT{-east:+d}"


def scheduler_config(bootstrap: str, plan: Plan, workdir: Path) -> dict[str, Any]:
    sources = [{"name": plan.n(s), "daily_limit": cap} for _, entries in POOLS.values() for s, _, cap in entries]
    pools = [
        {"name": plan.n(p), "policy": policy, "entries": [{"name": plan.n(s), "weight": w} for s, w, _ in entries]}
        for p, (policy, entries) in POOLS.items()
    ]
    return {
        "kafka": {"bootstrap_servers": bootstrap},
        "scheduler": {"app_id": f"exact-{plan.tag}"},
        "egress": {
            "daily_reset_timezone": noon_zone(),
            # Records of other tests on a shared broker fall to the default pool: an uncapped source of its own.
            "sources": [*sources, {"name": plan.n("spare")}],
            "pools": [*pools, {"name": plan.n("spare"), "entries": [{"name": plan.n("spare")}]}],
        },
        "queues": {
            "egress_pool": plan.n("spare"),
            "rules": [{"tenant": plan.n(t), "egress_pool": plan.n(p)} for t, (p, _, _) in TENANTS.items()],
        },
        "tenants": {plan.n(t): {"daily_limit": cap} for t, (_, _, cap) in TENANTS.items() if cap is not None},
    }


def offered_mail(plan: Plan) -> list[AcceptedMessage]:
    """Every tenant's messages over every domain, interleaved so each tenant's flow spans the feed."""
    now = datetime.now(UTC)
    per_tenant = []
    for role, (_, count, _) in TENANTS.items():
        tenant = plan.n(role)
        msgs = []
        for i in range(count):
            domain = plan.domains()[i % DOMAINS]
            msgs.append(
                AcceptedMessage(
                    id=f"{plan.tag}-{role}-{i:03d}",
                    submission_id=f"{plan.tag}-{role}",
                    tenant=tenant,
                    queue=str(QueueName(domain, tenant=tenant)),
                    sender=f"news@{role}.test",
                    recipient=f"r{i}@{domain}",
                    domain=domain,
                    message_id=f"{plan.tag}-{role}-{i}@{role}.test",
                    body=BodyRef(topic="mail.bodies", partition=0, offset=i, sha256="0" * 64, size=512),
                    reception_protocol="HTTP",
                    received_at=now,
                )
            )
        per_tenant.append(msgs)
    longest = max(len(m) for m in per_tenant)
    return [msgs[i] for i in range(longest) for msgs in per_tenant if i < len(msgs)]


# -- processes and witnesses -----------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    web_port: int

    def events(self, processor: str) -> list[dict[str, Any]]:
        return log_events(self.log, processor=processor)

    def owned(self, processor: str) -> list[int]:
        moves = [
            e
            for e in self.events(processor)
            if e.get("event") in ("partitions_assigned", "partitions_revoked", "partitions_lost")
        ]
        return list(moves[-1]["partitions"]) if moves and moves[-1]["event"] == "partitions_assigned" else []

    def held(self) -> float:
        """The egress stage's in-memory held count, as its /metrics shows it."""
        text = httpx.get(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5).text
        return next(
            float(line.split()[1]) for line in text.splitlines() if line.startswith("mailstream_egress_held_messages ")
        )


def start_worker(name: str, bootstrap: str, config: Path, workdir: Path) -> Worker:
    log, port = workdir / f"{name}.log", free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MAILSTREAM_LOG_LEVEL": "INFO"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailstream.scheduler", "--config", str(config), "--web-port", str(port)],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return Worker(name, proc, log, port)


@dataclass
class DeliveryStandIn:
    """Follows mail.delivery read_committed, as a delivery worker does, and answers each task of this run
    DELIVERED on mail.responses; notes when each task showed up."""

    bootstrap: str
    pools: set[str]
    start: list[int]
    tasks: list[tuple[float, DeliveryTask]] = field(default_factory=list)
    answered: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def begin(self) -> DeliveryStandIn:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"standin-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        consumer.assign([TopicPartition(DELIVERY.name, p, offset) for p, offset in enumerate(self.start)])
        producer = Producer(producer_config(self.bootstrap))
        try:
            while not self._stop.is_set():
                mine = [
                    decode(m.value() or b"", DeliveryTask) for m in consumer.consume(500, 0.05) if m.error() is None
                ]
                mine = [t for t in mine if t.egress_pool in self.pools]
                for task in mine:
                    self.tasks.append((time.monotonic(), task))
                    answer = DeliveryResponse(
                        id=task.id,
                        attempt=task.attempt,
                        attempt_id=task.attempt_id,
                        queue=task.queue,
                        outcome="DELIVERED",
                        response=SmtpResponse(code=250, enhanced_code="2.0.0", content="OK"),
                        egress_source=task.egress_source,
                        egress_path=task.egress_path,
                        started_at=task.issued_at,
                        completed_at=datetime.now(UTC),
                    )
                    producer.produce(
                        RESPONSES.name, key=route_key(task.tenant, task.queue).encode(), value=encode(answer)
                    )
                if mine:
                    assert producer.flush(30) == 0
                    self.answered += len(mine)
        finally:
            consumer.close()
            producer.flush(30)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def feed(
    bootstrap: str, mail: list[AcceptedMessage], gate: threading.Event, per_round: int = 20, pause: float = 0.25
) -> None:
    """Offer the mail over a few seconds, as traffic would, so the kill lands while it flows. Past a third of
    it, wait for the gate (the kill) however slow the machine: no pool can have reached its caps by then."""
    producer = Producer(producer_config(bootstrap))
    for i in range(0, len(mail), per_round):
        if i >= len(mail) // 3:
            gate.wait(120)
        for msg in mail[i : i + per_round]:
            producer.produce(ACCEPTED.name, key=route_key(msg.tenant, msg.queue).encode(), value=encode(msg))
        producer.flush(10)
        time.sleep(pause)
    assert producer.flush(30) == 0


def wait_for(cond: Callable[[], bool], timeout: float, what: Callable[[], str], interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what()}")
        time.sleep(interval)


def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """Every record of the topic consumed and committed by the group (empty partitions have no offsets)."""
    ends = end_offsets(bootstrap, topic, PARTITIONS)
    return all(
        c >= e for c, e in zip(committed_offsets(bootstrap, group, topic, PARTITIONS), ends, strict=True) if e > 0
    )


# -- the test ------------------------------------------------------------------------------------------------


def test_limits_hold_and_no_attempt_is_emitted_twice_across_sigkill_and_rebalance(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    plan = plan_names(kafka_bootstrap)
    config = scheduler_config(kafka_bootstrap, plan, tmp_path)
    config_path = tmp_path / "mailstream.yaml"
    config_path.write_text(yaml.safe_dump(config))
    app = config["scheduler"]["app_id"]
    mail = offered_mail(plan)
    ensure_topics(kafka_bootstrap, ALL_TOPICS)  # as every service does first
    starts = {t.name: end_offsets(kafka_bootstrap, t.name, PARTITIONS) for t in (DELIVERY, READY, STATUS)}
    expected_tasks = sum(cap for _, entries in POOLS.values() for _, _, cap in entries)
    for pool, (_, entries) in POOLS.items():  # the plan offers every pool more than its sources may send
        assert sum(min(n, cap or n) for p, n, cap in TENANTS.values() if p == pool) > sum(c for _, _, c in entries)

    launched = time.monotonic()
    workers = {name: start_worker(name, kafka_bootstrap, config_path, tmp_path) for name in ("worker-a", "worker-b")}
    standin = DeliveryStandIn(kafka_bootstrap, plan.pools, starts[DELIVERY.name])
    victim = workers["worker-a"]
    try:

        def split() -> bool:
            return all(
                sorted(p for w in workers.values() for p in w.owned(stage)) == list(range(PARTITIONS))
                and all(len(w.owned(stage)) == HALF for w in workers.values())
                for stage in ("queues", "egress")
            )

        wait_for(
            split,
            90,
            lambda: (
                "both workers to own half the partitions of both stages: "
                + str({n: (w.owned("queues"), w.owned("egress"), w.proc.poll()) for n, w in workers.items()})
            ),
        )
        lost = {stage: victim.owned(stage) for stage in ("queues", "egress")}
        ready_after = time.monotonic() - launched
        standin.begin()
        killed = threading.Event()
        feeder = threading.Thread(target=feed, args=(kafka_bootstrap, mail, killed), daemon=True)
        started = time.monotonic()
        feeder.start()
        wait_for(lambda: len(standin.tasks) >= KILL_AFTER_TASKS, 120, lambda: f"{KILL_AFTER_TASKS} tasks")
        victim.proc.kill()
        victim.proc.wait()
        killed_at = time.monotonic()
        killed.set()
        workers["worker-c"] = start_worker("worker-c", kafka_bootstrap, config_path, tmp_path)  # the supervisor's
        feeder.join(60)

        def settled() -> bool:
            return (
                len(standin.tasks) >= expected_tasks
                and standin.answered == len(standin.tasks)
                and caught_up(kafka_bootstrap, f"{app}-queues", ACCEPTED.name)
                and caught_up(kafka_bootstrap, f"{app}-queues", RESPONSES.name)
                and caught_up(kafka_bootstrap, f"{app}-egress", READY.name)
            )

        wait_for(
            settled,
            120,
            lambda: f"every input handled; tasks {len(standin.tasks)}/{expected_tasks}, answered {standin.answered}",
        )
        settled_at = time.monotonic()
        time.sleep(1.0)  # ticks run every 0.2 s: a late task would show up now
        survivors = [w for n, w in workers.items() if n != "worker-a"]
        live_held = sum(w.held() for w in survivors)
    finally:
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.terminate()
        for w in workers.values():
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        standin.stop()

    assert [w.proc.returncode for w in survivors] == [0, 0], "SIGTERM stops the survivors cleanly"
    tasks_at_kill = sum(at <= killed_at for at, _ in standin.tasks)
    assert 0 < tasks_at_kill < expected_tasks, "the kill must land mid-run"
    # The victim owned one capped tenant and one egress group (range assignment gave it half the partitions).
    lost_roles = sorted(r for r, p in plan.partitions.items() if p in lost["queues" if r in TENANTS else "egress"])
    assert [r[0] for r in lost_roles] == ["p", "t"], lost_roles
    victim_pool = plan.n(lost_roles[0])
    assert any(at > killed_at for at, t in standin.tasks if t.egress_pool == victim_pool), (
        "the victim's egress group had tasks left to emit: its new owner went on from the restored state"
    )

    ids = {m.id: m for m in mail}
    tasks = [
        decode(v, DeliveryTask)
        for _, _, _, v in read_all(kafka_bootstrap, DELIVERY.name, PARTITIONS, start=starts[DELIVERY.name])
        if v is not None
    ]
    tasks = [t for t in tasks if t.id in ids]
    ready = [
        decode(v, ReadyMessage)
        for _, _, _, v in read_all(kafka_bootstrap, READY.name, PARTITIONS, start=starts[READY.name])
        if schema_name(v) == ReadyMessage.schema_name
    ]  # not stage 2's own settlement notices
    ready = [r for r in ready if r.id in ids]

    # No second task for an attempt, and no second promotion; the stand-in saw exactly what was committed.
    assert [a for a, n in Counter((t.id, t.attempt) for t in tasks).items() if n > 1] == []
    assert [a for a, n in Counter((r.id, r.attempt) for r in ready).items() if n > 1] == []
    assert sorted(t.attempt_id for _, t in standin.tasks) == sorted(t.attempt_id for t in tasks)
    assert {t.attempt for t in tasks} == {1}

    # Each source sent exactly its daily cap, over several sites (paths), from its own pool.
    per_source = Counter(t.egress_source for t in tasks)
    assert per_source == Counter({plan.n(s): cap for _, entries in POOLS.values() for s, _, cap in entries})
    for source in per_source:
        assert len({t.egress_path for t in tasks if t.egress_source == source}) >= 2
    for pool, (_, entries) in POOLS.items():
        assert {t.egress_source for t in tasks if t.egress_pool == plan.n(pool)} == {plan.n(s) for s, _, _ in entries}
        assert len({t.domain for t in tasks if t.egress_pool == plan.n(pool)}) == DOMAINS

    # Each capped tenant was promoted exactly its daily cap over all its domains; the others all they offered.
    promoted = Counter(r.tenant for r in ready)
    assert promoted == Counter({plan.n(t): min(n, cap or n) for t, (_, n, cap) in TENANTS.items()})
    for t, (_, _, cap) in TENANTS.items():
        assert len({x.domain for x in ready if x.tenant == plan.n(t)}) == DOMAINS
        if cap is not None:
            assert sum(x.tenant == plan.n(t) for x in tasks) <= cap

    # Nothing lost: every message is delivered, held by egress, or waiting in its queue; never two of these.
    egress_state = latest_by_key(read_all(kafka_bootstrap, EGRESS_STATE.name, PARTITIONS))
    queue_state = latest_by_key(read_all(kafka_bootstrap, QUEUE_STATE.name, PARTITIONS))
    held = {key.tx_id for key in map(egress_keys.parse, egress_state) if isinstance(key, Held)}
    queue_entries = [(queue_keys.parse(k), v) for k, v in queue_state.items()]
    queued = {
        key.tx_id: decode(v, QueuedMessage) for key, v in queue_entries if isinstance(key, Message) and key.tx_id in ids
    }
    sent = {t.id for t in tasks}
    held_mine = held & set(ids)
    waiting = {i for i, q in queued.items() if q.transaction.status == "scheduled"}
    assert sent | held_mine | waiting == set(ids)
    assert len(sent) + len(held_mine) + len(waiting) == len(ids)
    assert held_mine == {r.id for r in ready} - sent
    assert {i for i, q in queued.items() if q.transaction.status == "ready"} == held_mine, "held stays 'ready'"
    assert waiting == set(ids) - {r.id for r in ready}
    assert live_held == len(held), "the live owners hold what the changelog says is held"
    statuses: dict[str, TransactionStatus] = {}
    for _, _, _, v in read_all(kafka_bootstrap, STATUS.name, PARTITIONS, start=starts[STATUS.name]):
        s = decode(v or b"", TransactionStatus)
        if s.id in ids and (s.id not in statuses or s.version > statuses[s.id].version):
            statuses[s.id] = s  # the status view keeps the highest version
    assert {i for i, s in statuses.items() if s.status == "delivered"} == sent
    assert {i for i, s in statuses.items() if s.status == "ready"} == held_mine

    # The limit counters the owners committed say the same.
    limits = {
        key: decode(v, LimitState)
        for key, v in (*((egress_keys.parse(k), v) for k, v in egress_state.items()), *queue_entries)
        if isinstance(key, LimitScope)
    }
    assert {s: limits[SourceLimit(plan.n(s))].used for _, e in POOLS.values() for s, _, _ in e} == {
        s: cap for _, e in POOLS.values() for s, _, cap in e
    }
    assert {t: limits[TenantLimit(plan.n(t))].used for t, (_, _, cap) in TENANTS.items() if cap} == {
        t: cap for t, (_, _, cap) in TENANTS.items() if cap
    }

    raw = [
        v
        for _, _, _, v in read_all(
            kafka_bootstrap, DELIVERY.name, PARTITIONS, start=starts[DELIVERY.name], isolation="read_uncommitted"
        )
        if v is not None
    ]
    aborted = sum(decode(v, DeliveryTask).id in ids for v in raw) - len(tasks)
    print(
        f"\nworkers ready after {ready_after:.1f}s; killed worker-a (owner of {lost_roles}) "
        f"{killed_at - started:.1f}s into the feed, after {tasks_at_kill}/{expected_tasks} tasks; {aborted} task "
        f"records aborted; settled {settled_at - killed_at:.1f}s after the kill; {len(held_mine)} held by egress, "
        f"{len(waiting)} waiting for their tenant's day"
    )
