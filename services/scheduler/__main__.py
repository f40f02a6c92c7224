"""`python -m mailstream.scheduler --config FILE`: run one scheduler worker (both stages).

Each stage is a `TransactionalProcessor` on a thread of its own; any number of workers may run,
Kafka spreads the partitions (and with them the state) among them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable

from prometheus_client import Gauge

from mailstream.cli import prepare, service_parser
from mailstream.config.model import Config
from mailstream.core.clock import system_clock
from mailstream.events.kafka import Cluster
from mailstream.events.processor import TransactionalProcessor
from mailstream.events.topics import DEAD_LETTER, EGRESS_STATE, PARTITIONS, QUEUE_STATE, READY
from mailstream.observability.http import serve_health
from mailstream.observability.logs import get_logger
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.mx_sites import MxSites
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

log = get_logger(__name__)


def build_processors(config: Config) -> tuple[list[TransactionalProcessor], QueueStage, EgressStage]:
    policies = Policies(config)
    bootstrap, group = Cluster.of(config.kafka), config.scheduler.app_id
    mx = config.scheduler.mx_sites
    sites = MxSites(mx, config.delivery.nameservers) if mx.enabled and config.delivery.smarthost is None else None
    queues, egress = QueueStage(policies), EgressStage(policies, sites=sites)
    processors = [
        TransactionalProcessor(
            bootstrap=bootstrap,
            group_id=f"{group}-queues",
            inputs=INPUTS,
            changelog=QUEUE_STATE.name,
            partitions=PARTITIONS,
            handler=queues,
            clock=system_clock,
            tick_interval=0.2,
            name="queues",
            dead_letter=DEAD_LETTER.name,
        ),
        TransactionalProcessor(
            bootstrap=bootstrap,
            group_id=f"{group}-egress",
            inputs=[READY.name],
            changelog=EGRESS_STATE.name,
            partitions=PARTITIONS,
            handler=egress,
            clock=system_clock,
            tick_interval=0.2,
            name="egress",
            dead_letter=DEAD_LETTER.name,
        ),
    ]
    return processors, queues, egress


def _dead_lettered(processor: TransactionalProcessor) -> Callable[[], float]:
    return lambda: processor.records_dead_lettered


async def _run(config: Config, web_port: int) -> int:
    processors, queues, egress = build_processors(config)
    held = Gauge("mailstream_egress_held_messages", "Messages waiting for egress capacity")
    held.set_function(egress.held_count)
    shaping = Gauge(
        "mailstream_shaping_actions", "Adaptive-shaping actions in force in this worker's partitions", ["stage"]
    )
    shaping.labels("queues").set_function(queues.shaping_count)
    shaping.labels("egress").set_function(egress.shaping_count)
    dead = Gauge(
        "mailstream_scheduler_dead_lettered_records",
        "Input records a stage failed on, set aside in mail.dead-letter since start",
        ["stage"],
    )
    for p in processors:
        dead.labels(p.name).set_function(_dead_lettered(p))
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = await serve_health(config.scheduler.web_host, web_port, lambda: all(p.healthy for p in processors))
    failures: list[BaseException] = []

    def run(p: TransactionalProcessor) -> None:
        try:
            p.run(stop)
        except BaseException as exc:  # a fatal processor error ends the worker: let the supervisor restart it
            failures.append(exc)
            log.error("processor_failed", error=str(exc))
            stop.set()

    threads = [threading.Thread(target=run, args=(p,), name=f"stage-{i}") for i, p in enumerate(processors)]
    for t in threads:
        t.start()
    log.info("started", bootstrap=config.kafka.bootstrap_servers, web_port=web_port)
    try:
        await asyncio.to_thread(stop.wait)  # set by SIGTERM/SIGINT or a failed processor
    finally:
        stop.set()
        for t in threads:
            await asyncio.to_thread(t.join)
        await runner.cleanup()
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = service_parser("scheduler")
    parser.add_argument("--web-port", type=int, help="health and /metrics port (overrides the file)")
    args = parser.parse_args(argv)
    config = prepare("scheduler", args)
    return asyncio.run(_run(config, args.web_port or config.scheduler.web_port))


if __name__ == "__main__":
    sys.exit(main())
