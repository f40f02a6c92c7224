"""Both scheduler stages on the in-memory twin, as the pipeline drives them: µs and bytes per message.

    .venv/bin/python -m bench.scheduler_memory [--messages 20000] [--batch 16] [--profile out.prof] [--json]

Each round feeds `--batch` accepted messages (one tenant, the default pool, windows open), then runs
stage 1 (accept and promote), stage 2 (hold and release: task and Dispatched notice), stage 1 again (the
notice: 'in_delivery'), a stand-in delivery worker that answers every task DELIVERED, and stage 1 once
more (the response: 'delivered'). It prints the stages' CPU per message and the bytes they write per
message by topic, changelogs included (key + value, as `bench/vs_postfix` counts them). No broker, so
the figure is the stages' Python cost alone; it moves little with other load on the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from mailstream.config.model import parse_config
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryOutput, MemoryProcessor
from mailstream.events.records import DeliveryResponse, DeliveryTask
from mailstream.events.serde import decode, encode
from mailstream.events.topics import (
    ACCEPTED,
    DELIVERY,
    EGRESS_STATE,
    PARTITIONS,
    QUEUE_STATE,
    READY,
    RESPONSES,
    route_key,
)
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

CONFIG = {"delivery": {"smarthost": "127.0.0.1:2525"}, "queues": {"retry_interval": "20 minutes"}}


@dataclass(slots=True)
class CountingOutput(MemoryOutput):
    """A stage's writes, counted by topic (its changelog under `changelog_name`)."""

    changelog_name: str = ""
    written: Counter[str] = field(default_factory=Counter)

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.written[topic] += len(key) + len(value)
        MemoryOutput.send(self, topic, key, value, partition)

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.written[self.changelog_name] += len(key) + len(value or b"")
        MemoryOutput.put(self, partition, key, value)


def counting(processor: MemoryProcessor, changelog: str) -> CountingOutput:
    out = CountingOutput(processor.bus, {}, keep_changelog=False, changelog_name=changelog)
    processor.out = out
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=16, help="accepted messages per round (records per batch)")
    parser.add_argument("--profile", help="write a cProfile of the stages' work to this file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    policies = Policies(parse_config(CONFIG, env={}))
    bus = MemoryBus(PARTITIONS)
    queues = MemoryProcessor(bus, INPUTS, QueueStage(policies), keep_changelog=False)
    egress = MemoryProcessor(bus, [READY.name], EgressStage(policies), keep_changelog=False)
    outs = [counting(queues, QUEUE_STATE.name), counting(egress, EGRESS_STATE.name)]
    now = fixtures.T0
    base = fixtures.accepted().model_copy(
        update={
            "send_at": None,
            "received_at": now,
            "priority": None,
            "tenant": "bench",
            "campaign": None,
            "queue": "bench@example.com",
        }
    )
    key = route_key(base.tenant, base.queue).encode()
    egress.tick(now)  # stage 2 settles its egress grouping first
    egress.step(now, discard=True)
    bus.topics.clear()

    profiler = cProfile.Profile() if args.profile else None
    stages_s, delivered, n = 0.0, 0, args.messages
    for first in range(0, n, args.batch):
        count = min(args.batch, n - first)
        for i in range(first, first + count):
            msg = base.model_copy(update={"id": str(uuid.UUID(int=i)), "recipient": f"r{i}@example.com"})
            bus.send(ACCEPTED.name, key, encode(msg))
        now += timedelta(milliseconds=10)
        t = time.process_time()
        if profiler:
            profiler.enable()
        queues.step(now, discard=True)  # accept, promote
        egress.step(now, discard=True)  # hold, release
        queues.step(now, discard=True)  # dispatched: in_delivery
        if profiler:
            profiler.disable()
        stages_s += time.process_time() - t
        answers = []
        for record in bus.read(DELIVERY.name):
            task = decode(record.value, DeliveryTask)
            answers.append(
                encode(
                    DeliveryResponse(
                        id=task.id,
                        attempt=task.attempt,
                        attempt_id=task.attempt_id,
                        queue=task.queue,
                        outcome="DELIVERED",
                        response=fixtures.OK_250,
                        egress_source=task.egress_source,
                        egress_path=task.egress_path,
                        peer_address="127.0.0.1:2525",
                        started_at=now,
                        completed_at=now,
                    )
                )
            )
        delivered += len(answers)
        bus.topics.clear()  # status, events, delivery: the broker's
        for value in answers:
            bus.send(RESPONSES.name, key, value)
        t = time.process_time()
        if profiler:
            profiler.enable()
        queues.step(now, discard=True)  # delivered
        if profiler:
            profiler.disable()
        stages_s += time.process_time() - t
        bus.topics.clear()
    if profiler:
        profiler.dump_stats(args.profile)

    written = outs[0].written + outs[1].written
    per_topic = {topic: round(b / n) for topic, b in sorted(written.items(), key=lambda kv: -kv[1])}
    figures = {
        "messages": n,
        "batch": args.batch,
        "delivered": delivered,
        "stages_us_per_message": round(stages_s / n * 1e6, 1),
        "bytes_per_message": round(sum(written.values()) / n),
        "bytes_by_topic": per_topic,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:24} {v}")
    return 0 if delivered == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
