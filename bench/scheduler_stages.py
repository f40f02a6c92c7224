"""Scheduler stage throughput and memory, on the in-memory processor twin (no broker, no SMTP).

    .venv/bin/python -m bench.scheduler_stages --messages 1000000 [--tenants 20] [--json]

Phase 1 queues N messages in stage 1 while every egress source is outside its send window, so all
of them wait (in stage 2's state, as they would in a real worker); it reports records/s and the
process's resident memory with N messages held. Phase 2 opens the window and drains everything
through both stages to a sink that accepts at once, reporting events/s (accepted, ready,
responses). The peer figure is the cost of the serde alone (decode + encode of each record),
measured in the same run: the ratio shows what the scheduling logic adds on top of it.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psutil

from mailstream.config.model import parse_config
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryProcessor
from mailstream.events.records import AcceptedMessage, DeliveryResponse, DeliveryTask
from mailstream.events.serde import decode, encode
from mailstream.events.topics import ACCEPTED, DELIVERY, PARTITIONS, READY, RESPONSES, route_key
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

START = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 05:00 in Berlin: before the window opens
CONFIG = {
    "delivery": {"smarthost": "127.0.0.1:2525"},
    "egress": {
        "daily_reset_timezone": "Europe/Berlin",
        "sources": [{"name": f"ip-{i}", "send_window": "08:00-20:00 Europe/Berlin"} for i in range(4)],
        "pools": [{"name": "main", "entries": [{"name": f"ip-{i}"} for i in range(4)]}],
    },
    "queues": {"egress_pool": "main"},
}


CHUNK = 10_000


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--progress", action="store_true", help="print queued count and RSS to stderr")
    args = parser.parse_args()
    n = args.messages

    policies = Policies(parse_config(CONFIG, env={}))
    bus = MemoryBus(PARTITIONS)
    # The changelogs live in Kafka, not in the worker: the twin does not keep them here.
    queues = MemoryProcessor(bus, INPUTS, QueueStage(policies), keep_changelog=False)
    egress = MemoryProcessor(bus, [READY.name], EgressStage(policies), keep_changelog=False)
    base = fixtures.accepted().model_copy(update={"send_at": None, "received_at": START})
    rss_before = rss_mb()

    # Peer: serde alone, on the same records.
    sample = [encode(base.model_copy(update={"id": f"peer-{i}"})) for i in range(min(n, 20_000))]
    t = time.perf_counter()
    for raw in sample:
        encode(decode(raw, AcceptedMessage))
    serde_per_s = len(sample) / (time.perf_counter() - t)
    del sample

    egress.tick(START)  # stage 2 settles its egress grouping first (every partition tells every other)
    egress.step(START, discard=True)

    # Phase 1, in chunks as a consumer would read them: the worker holds state, not the topics.
    produce_s = queue_s = 0.0
    for first in range(0, n, CHUNK):
        t = time.perf_counter()
        for i in range(first, min(n, first + CHUNK)):
            tenant = f"t{i % args.tenants}"
            msg = base.model_copy(
                update={
                    "id": str(uuid.UUID(int=i)),
                    "tenant": tenant,
                    "queue": f"spring:{tenant}@example.com",
                    "recipient": f"r{i}@example.com",
                }
            )
            bus.send(ACCEPTED.name, route_key(msg.tenant, msg.queue).encode(), encode(msg))
        produce_s += time.perf_counter() - t
        t = time.perf_counter()
        queues.step(START, discard=True)
        egress.step(START, discard=True)
        queue_s += time.perf_counter() - t
        bus.topics.clear()  # status, events, snapshots: the broker's
        if args.progress and (first // CHUNK) % 10 == 0:
            print(f"queued {first + CHUNK:>9,}  rss {rss_mb():,.0f} MB", file=sys.stderr, flush=True)
    held = egress.handler.held_count()  # type: ignore[attr-defined]
    gc.collect()
    rss_held = rss_mb()

    now = START + timedelta(hours=3, minutes=1)  # 08:01 Berlin: the window is open
    t = time.perf_counter()
    delivered = 0
    while delivered < n:
        egress.tick(now)
        queues.step(now, discard=True)  # dispatch notices: 'in_delivery'
        fresh = bus.read(DELIVERY.name)
        bus.topics.clear()
        for record in fresh:
            task = decode(record.value, DeliveryTask)
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
            bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(answer))
        delivered += len(fresh)
        queues.step(now, discard=True)
        bus.topics.clear()  # status, events, snapshots: the broker's
        if not fresh:
            break
    drain_s = time.perf_counter() - t

    figures = {
        "messages": n,
        "held_in_egress_state": held,
        "stage1_accept_plus_stage2_hold_per_s": round(n / queue_s),
        "drain_release_plus_response_per_s": round(delivered / drain_s) if drain_s else None,
        "delivered": delivered,
        "peer_serde_roundtrip_per_s": round(serde_per_s),
        "ratio_stage_events_vs_serde": round((2 * n / queue_s) / serde_per_s, 3),
        "rss_mb_before": round(rss_before),
        "rss_mb_with_all_held": round(rss_held),
        "state_bytes_per_message": round((rss_held - rss_before) * 2**20 / n),
        "producing_test_records_s": round(produce_s, 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:40} {v}")
    return 0 if delivered == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
