"""mailstream driven over HTTP: N recipients posted to `POST /api/inject/v1` across the ingest replicas,
followed on mail.status until each is delivered (or failed), with Kafka bytes, CPU and memory.

Used by `bench.inject_to_sink` and `bench.vs_postfix`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from bench.harness import Load, ProcessSampler, SmtpSink, pct, rank_latency
from mailstream.core.egress_path import EgressPath
from mailstream.core.partitioner import partition_of
from mailstream.events.records import TransactionStatus
from mailstream.events.serde import decode
from mailstream.events.topics import EGRESS_STATE, QUEUE_STATE, STATUS, route_key
from tests.infra.stack import ADMIN_KEY, Stack
from tests.infra.topics import Offsets, bytes_written, topic_offsets

FAILED = {"bounced", "deferred", "expired", "cancelled"}  # deferred counts: its retry is 20 minutes away
SERVICES_AND_BROKER = ("ingest", "scheduler", "delivery", "broker")
CHANGELOGS = {QUEUE_STATE.name, EGRESS_STATE.name}  # the scheduler stages' state


def tenant_keys(tenant: str, smarthost: str) -> tuple[str, str, str]:
    """The keys a tenant's mail is written with under `tenant_config`: its route key (mail.accepted, mail.dispatched,
    mail.responses), its egress group (mail.ready) and its egress path (mail.delivery)."""
    return route_key(tenant, ""), f"pool-{tenant}", EgressPath(f"src-{tenant}", smarthost).key()


KEYED_TOPICS = ("mail.accepted", "mail.ready", "mail.delivery")  # in the order of tenant_keys


def spread_tenants(count: int, partitions: int, smarthost: str) -> tuple[str, ...]:
    """`count` tenant names whose keys fall on as many distinct partitions of each keyed topic as they can (greedy
    over candidate names). Plain names bench-1..bench-K often share a partition under murmur2, and a shared
    partition hides what another process could do. One tenant: () (the stack's default queue and pool)."""
    if count <= 1:
        return ()
    used: list[collections.Counter[int]] = [collections.Counter() for _ in KEYED_TOPICS]

    def load(name: str) -> int:
        keys = tenant_keys(name, smarthost)
        return sum(used[k][partition_of(key.encode(), partitions)] for k, key in enumerate(keys))

    names: list[str] = []
    for i in range(1, count + 1):
        best = min((f"bench{i}-{n}" for n in range(200)), key=load)
        for k, key in enumerate(tenant_keys(best, smarthost)):
            used[k][partition_of(key.encode(), partitions)] += 1
        names.append(best)
    return tuple(names)


def placement(tenants: tuple[str, ...], partitions: int, smarthost: str) -> dict[str, int]:
    """How many partitions of each keyed topic the tenants' mail reaches."""
    keys = [tenant_keys(t, smarthost) for t in tenants] or [("", "", "")]
    return {topic: len({partition_of(k[i].encode(), partitions) for k in keys}) for i, topic in enumerate(KEYED_TOPICS)}


def tenant_config(tenants: tuple[str, ...]) -> dict[str, Any]:
    """stack_config overrides that give each tenant its own egress pool and source (tenant T's queues use pool-T,
    whose only source is src-T), so each tenant has a route key, an egress group and an egress path of its own.
    Without tenants all mail shares one key per topic: one partition does the work however many processes run."""
    if not tenants:
        return {}
    return {
        "egress": {
            "sources": [{"name": f"src-{t}"} for t in tenants],
            "pools": [{"name": f"pool-{t}", "entries": [{"name": f"src-{t}"}]} for t in tenants],
        },
        "queues": {
            "egress_pool": f"pool-{tenants[0]}",
            "rules": [{"tenant": t, "egress_pool": f"pool-{t}"} for t in tenants],
        },
    }


def inject_body(first: int, batch: int, size: int, tag: str = "", tenant: str | None = None) -> dict[str, Any]:
    """One request with raw content of exactly `size` bytes, unique per request (bodies are not shared)."""
    head = (
        f"From: bench@mailstream.test\r\nTo: list@example.com\r\nSubject: bench {tag}{first}\r\nMessage-ID: "
        f"<bench-{tag}{first}-{time.time_ns()}@mailstream.test>\r\nDate: Sun, 22 Nov 2026 08:00:00 +0000\r\n\r\n"
    )
    pad = max(size - len(head), 0)
    body: dict[str, Any] = {
        "envelope_sender": "bench@mailstream.test",
        "template_dialect": "Static",
        "recipients": [{"email": f"r{tag}{first + i}@example.com"} for i in range(batch)],
        "content": head + ("x" * 78 + "\r\n") * (pad // 80) + "y" * (pad % 80),
    }
    if tenant is not None:
        body["metadata"] = {"tenant": tenant}
    return body


def kafka_consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{time.time_ns()}",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )


@dataclass
class Run:
    """What one measured run collects; filled by the coroutines below, all on one event loop."""

    submitted: dict[str, float] = field(default_factory=dict)  # tx id → local time its 200 came back
    submit_latency: list[float] = field(default_factory=list)  # per request
    done: dict[str, tuple[TransactionStatus, float]] = field(default_factory=dict)  # tx id → (record, read at)
    start: float = 0.0
    end: float = 0.0
    submitting: bool = True


async def submit_all(apis: list[str], load: Load, run: Run, tag: str) -> None:
    """`load.concurrency` workers post requests of `load.batch` recipients; worker i talks to ingest replica
    i mod len(apis), so the bench itself spreads the load across the replicas."""
    firsts = iter(range(0, load.messages, load.batch))
    per_api = -(-load.concurrency // len(apis))
    clients = [
        httpx.AsyncClient(
            base_url=api,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=60.0,
            limits=httpx.Limits(max_connections=per_api),
        )
        for api in apis
    ]

    async def worker(client: httpx.AsyncClient) -> None:
        for first in firsts:
            tenant = load.tenants[first // load.batch % len(load.tenants)] if load.tenants else None
            body = inject_body(first, min(load.batch, load.messages - first), load.size, tag, tenant)
            sent = time.time()
            r = await client.post("/api/inject/v1", json=body)
            run.submit_latency.append(time.time() - sent)
            r.raise_for_status()
            run.submitted.update((tx["id"], sent + run.submit_latency[-1]) for tx in r.json()["transactions"])

    run.start = time.time()
    try:
        await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(load.concurrency)))
    finally:
        run.end, run.submitting = time.time(), False
        for client in clients:
            await client.aclose()


async def watch_status(consumer: Consumer, run: Run, timeout: float) -> None:
    """Reads mail.status until every submitted transaction is delivered or failed, or `timeout` after submit."""
    loop = asyncio.get_running_loop()
    while run.submitting or (not run.submitted.keys() <= run.done.keys() and time.time() < run.end + timeout):
        for msg in await loop.run_in_executor(None, consumer.consume, 500, 0.2):
            if msg.error() is None and msg.value() is not None:
                status = decode(msg.value(), TransactionStatus)
                if status.status == "delivered" or (status.status in FAILED and status.id not in run.done):
                    run.done[status.id] = (status, time.time())


def stages(delivered: list[tuple[TransactionStatus, float]]) -> dict[str, float]:
    """Median seconds per stage, from the timestamps the services wrote into the delivered status."""
    rows = [(s.attempts[-1], s, seen) for s, seen in delivered]
    parts = {  # delivery stamps started_at before it fetches the body, so "attempt" = body read + SMTP
        "accepted→attempt": [(a.started_at - s.created_at).total_seconds() for a, s, _ in rows],
        "attempt (body read + SMTP)": [(a.completed_at - a.started_at).total_seconds() for a, _, _ in rows],
        "attempt→status": [(s.updated_at - a.completed_at).total_seconds() for a, s, _ in rows],
        "status→bench read": [seen - s.updated_at.timestamp() for _, s, seen in rows],
    }
    return {name: pct(values, 0.5) for name, values in parts.items()}


def failure_summary(status: TransactionStatus) -> str:
    last = status.attempts[-1] if status.attempts else None
    return f"{status.id}: {status.status}" + (f" ({last.response})" if last is not None else "")


def measure(stack: Stack, load: Load, sink: SmtpSink, *, tag: str = "", count_bytes: bool = True) -> dict[str, Any]:
    """One run of `load` through the stack; `sink` is the stack's smarthost (its arrivals time the deliveries)."""
    bootstrap = stack.bootstrap
    before = topic_offsets(bootstrap, record_prefixes(stack))
    consumer, run = kafka_consumer(bootstrap), Run()  # mail.status is assigned at its end offsets before any submit
    consumer.assign([TopicPartition(t, p, high) for (t, p), high in before.items() if t == STATUS.name])
    sink_base = sink.received
    sampler = ProcessSampler(
        names={p.pid: name for name, p in stack.procs.items()}, gauges={"sink_sessions": sink.sessions}
    ).start()

    async def load_and_watch() -> None:  # if a submit fails, asyncio.run cancels the watcher
        await asyncio.gather(submit_all(stack.apis, load, run, tag), watch_status(consumer, run, load.timeout))

    try:
        asyncio.run(load_and_watch())
    finally:
        consumer.close()
        sampler.stop()
    wall = time.time() - run.start
    done = [run.done[tx] for tx in run.submitted if tx in run.done]
    delivered = {tx: run.done[tx] for tx in run.submitted if tx in run.done and run.done[tx][0].status == "delivered"}
    lat = [seen - run.submitted[tx] for tx, (_, seen) in delivered.items()]
    arrivals = sink.arrivals.times[sink_base : sink_base + len(delivered)]
    figures: dict[str, Any] = {
        "messages": load.messages,
        "size": load.size,
        "concurrency": load.concurrency,
        "batch": load.batch,
        "tenants": len(load.tenants) or 1,
        "submitted": len(run.submitted),
        "delivered": len(delivered),
        "failed": len(done) - len(delivered),
        "missing": len(run.submitted) - len(done),
        "sink_received": sink.received - sink_base,
        "wall_s": wall,
        "failures": [failure_summary(s) for s, _ in done if s.status != "delivered"][:5],
        "accepted_per_s": len(run.submitted) / (run.end - run.start),
        # the peers' clock: first submit → the delivered-th message counted at the sink
        "delivered_per_s": len(arrivals) / (arrivals[-1] - run.start) if arrivals else 0.0,
        # mailstream's own confirmation: first submit → the last delivered status read from mail.status
        "confirmed_per_s": len(delivered) / (max(s for _, s in delivered.values()) - run.start) if delivered else 0,
        "submit_latency_s": {"p50": pct(run.submit_latency, 0.5), "p99": pct(run.submit_latency, 0.99)},
        "delivered_latency_s": {
            "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99),
            "max": max(lat, default=float("nan")),
            "method": "exact: local read time of the delivered mail.status record - local time its 200 came back",
        },
        "sink_latency_s": rank_latency(list(run.submitted.values()), arrivals),
        "stage_p50_s": stages(list(delivered.values())),
        **sampler.figures(wall, lambda label: label.startswith(SERVICES_AND_BROKER)),
    }
    if count_bytes:
        figures["kafka_bytes_per_msg"] = kafka_bytes(
            stack, before, len(run.submitted), load.size, partial=bool(figures["missing"])
        )
    return figures


def kafka_bytes(stack: Stack, before: Offsets, submitted: int, size: int, *, partial: bool) -> dict[str, Any]:
    """Bytes written to the mail.* topics and the scheduler's changelogs since `before`, per submitted message."""
    time.sleep(1.0)  # let the last status and changelog writes land before counting bytes
    written = bytes_written(stack.bootstrap, before, topic_offsets(stack.bootstrap, record_prefixes(stack)))
    n = max(submitted, 1)  # = delivered in a complete run; partial runs undercount delivery-side writes
    per_msg = {t: b / n for t, b in sorted(written.items()) if b}
    total = sum(per_msg.values())
    mail = sum(b for t, b in per_msg.items() if t.startswith("mail.") and t not in CHANGELOGS)
    return {
        "mail": mail,
        "changelogs": total - mail,
        "all": total,
        "by_topic": per_msg,
        "partial": partial,
        "ratio_mail": mail / size,
        "ratio_all": total / size,
    }


def record_prefixes(stack: Stack) -> tuple[str, ...]:
    """The topics a run writes: mail.* and the scheduler's changelogs (named after its application id)."""
    return "mail.", stack.config["scheduler"]["app_id"]
