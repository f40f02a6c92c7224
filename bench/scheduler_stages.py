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
import json
import time
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
from mailstream.scheduler.queue_stage import QueueStage

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


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.messages

    policies = Policies(parse_config(CONFIG, env={}))
    bus = MemoryBus(PARTITIONS)
    queues = MemoryProcessor(bus, [ACCEPTED.name, RESPONSES.name], QueueStage(policies))
    egress = MemoryProcessor(bus, [READY.name], EgressStage(policies))
    base = fixtures.accepted().model_copy(update={"send_at": None, "received_at": START})
    rss_before = rss_mb()

    # Peer: serde alone, on the same records.
    sample = [encode(base.model_copy(update={"id": f"peer-{i}"})) for i in range(min(n, 20_000))]
    t = time.perf_counter()
    for raw in sample:
        encode(decode(raw, AcceptedMessage))
    serde_per_s = len(sample) / (time.perf_counter() - t)

    t = time.perf_counter()
    for i in range(n):
        tenant = f"t{i % args.tenants}"
        msg = base.model_copy(update={"id": f"tx-{i}", "tenant": tenant, "queue": f"spring:{tenant}@example.com",
                                      "recipient": f"r{i}@example.com"})
        bus.send(ACCEPTED.name, route_key(msg.tenant, msg.queue).encode(), encode(msg))
    produce_s = time.perf_counter() - t
    t = time.perf_counter()
    queues.step(START)
    egress.step(START)
    queue_s = time.perf_counter() - t
    held = egress.handler.held_count()  # type: ignore[attr-defined]
    bus.topics.pop(ACCEPTED.name)  # the broker holds these, not the worker
    for topic in (READY.name, "mail.status", "mail.events"):
        bus.topics.pop(topic, None)
    rss_held = rss_mb()

    now = START + timedelta(hours=3, minutes=1)  # 08:01 Berlin: the window is open
    t = time.perf_counter()
    delivered = 0
    while delivered < n:
        egress.tick(now)
        fresh = bus.read(DELIVERY.name)
        bus.topics.pop(DELIVERY.name, None)
        for record in fresh:
            task = decode(record.value, DeliveryTask)
            answer = DeliveryResponse(
                id=task.id, attempt=task.attempt, attempt_id=task.attempt_id, queue=task.queue, outcome="DELIVERED",
                response=fixtures.OK_250, egress_source=task.egress_source, egress_path=task.egress_path,
                started_at=now, completed_at=now)
            bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(answer))
        delivered += len(fresh)
        queues.step(now)
        if not fresh:
            break
    drain_s = time.perf_counter() - t

    figures = {
        "messages": n, "held_in_egress_state": held,
        "stage1_accept_plus_stage2_hold_per_s": round(n / queue_s),
        "drain_release_plus_response_per_s": round(delivered / drain_s) if drain_s else None,
        "delivered": delivered,
        "peer_serde_roundtrip_per_s": round(serde_per_s),
        "ratio_stage_events_vs_serde": round((2 * n / queue_s) / serde_per_s, 3),
        "rss_mb_before": round(rss_before), "rss_mb_with_all_held": round(rss_held),
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
