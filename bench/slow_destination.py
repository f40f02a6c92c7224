"""Fast-path delivered/s with and without a tarpit in flight on the same delivery worker (issue 6, item 4).

One DeliveryWorker, a private broker (or KAFKA_BOOTSTRAP_SERVERS), two relays on loopback: a tarpit that
waits --reply-delay seconds before every reply and a recording sink. Rounds of --fast-messages tasks go
to the sink alone, then again while --tarpit-messages tasks hold tarpit connections; delivered/s is
counted at the sink. The issue's bar: the tarpit lowers the fast path's delivered/s by at most 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from mailstream.config.model import Config
from mailstream.core.clock import system_clock
from mailstream.delivery.dispatch import Gate
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.bodies import put_body
from mailstream.events.kafka import EventProducer, ensure_topics
from mailstream.events.records import BodyRef
from mailstream.events.topics import BODIES, DELIVERY, RESPONSES
from mailstream.observability.logs import configure_logging
from tests.infra.broker import LocalBroker
from tests.infra.slow_paths import FAST, SLOW, publish, tasks_for, two_path_config
from tests.infra.smtp_recorder import RecordingSink
from tests.infra.tarpit import Tarpit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reply-delay", type=float, default=20.0, help="seconds before each tarpit reply")
    p.add_argument("--tarpit-messages", type=int, default=40)
    p.add_argument("--fast-messages", type=int, default=1000, help="per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds per phase; the median is reported")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one round may take")
    return p.parse_args(argv)


async def fast_round(
    producer: EventProducer, sink: RecordingSink, config: Config, body: BodyRef, count: int, label: str, deadline: float
) -> float:
    """Delivered/s of one round: its messages over the time from before publishing to the sink's last one."""
    run = f"{label}-{uuid.uuid4().hex[:6]}"
    tasks = tasks_for(config, FAST, run, count, body)
    started = time.monotonic()
    await publish(producer, tasks)
    while True:
        arrived = [m.at for m in sink.messages if run in m.rcpt_tos[0]]
        if len(arrived) >= len(tasks):
            return len(tasks) / (max(arrived) - started)
        if time.monotonic() > started + deadline:
            raise RuntimeError(f"round {label}: {len(arrived)} of {len(tasks)} delivered within {deadline:.0f} s")
        await asyncio.sleep(0.02)


async def until(done: Callable[[], bool], within: float) -> bool:
    """Poll `done` (the servers record on their own threads) until it holds or `within` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        if done():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def measure(bootstrap: str, args: argparse.Namespace) -> int:
    ensure_topics(bootstrap, [BODIES, DELIVERY, RESPONSES])
    with Tarpit(args.reply_delay) as tarpit, RecordingSink() as sink:
        config = two_path_config(bootstrap, tarpit.hostport, sink.hostport, args.reply_delay)
        producer = EventProducer(bootstrap)
        worker = DeliveryWorker(config, system_clock)
        running = asyncio.create_task(worker.run())
        try:
            body = await put_body(producer, b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 25)
            both = (config, body, args.fast_messages)
            await fast_round(producer, sink, *both, "warmup", args.timeout)
            alone = [await fast_round(producer, sink, *both, f"alone{i}", args.timeout) for i in range(args.rounds)]
            run = uuid.uuid4().hex[:6]
            slow = tasks_for(config, SLOW, run, args.tarpit_messages, body)
            await publish(producer, slow)
            # An unshaped path holds at most the gate's path share of the worker's connection slots.
            in_flight = min(args.tarpit_messages, Gate(config.delivery.concurrency).path_slots)
            if not await until(lambda: tarpit.connections >= in_flight, args.timeout):  # each holds one
                raise RuntimeError(f"the tarpit got {tarpit.connections} of {in_flight} connections")
            beside = [await fast_round(producer, sink, *both, f"tarpit{i}", args.timeout) for i in range(args.rounds)]
            finished_early = len(tarpit.messages)
            await until(lambda: len(tarpit.messages) >= args.tarpit_messages, 20 * args.reply_delay)
            slow_done = len(tarpit.messages)
        finally:
            worker.stop()
            await running
            await producer.close()
    a, b = statistics.median(alone), statistics.median(beside)
    print(f"fast path alone          {a:8.1f} delivered/s  (rounds: {', '.join(f'{r:.0f}' for r in alone)})")
    print(f"fast path beside tarpit  {b:8.1f} delivered/s  (rounds: {', '.join(f'{r:.0f}' for r in beside)})")
    print(f"ratio                    {b / a:8.3f}  (bar: >= 0.90)")
    print(
        f"tarpit: {args.tarpit_messages} messages, {args.reply_delay:.0f} s per reply, {tarpit.connections} "
        f"connections; {finished_early} finished during the measurement (must be 0), {slow_done} delivered in "
        f"the end"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if finished_early == 0 and slow_done == args.tarpit_messages else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("bench", "WARNING")  # not a line per attempt
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="mailstream-bench-") as tmp, contextlib.ExitStack() as cleanup:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = LocalBroker(Path(tmp) / "broker")
            cleanup.callback(broker.stop)
            bootstrap = broker.start()
        try:
            return asyncio.run(measure(bootstrap, args))
        except RuntimeError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
