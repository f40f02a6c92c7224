"""`python -m mailstream.delivery --config FILE`: run one delivery worker."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from mailstream.config import ConfigError, load_config
from mailstream.core.clock import system_clock
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.kafka import KafkaUnavailable, ensure_topics
from mailstream.events.topics import ALL_TOPICS
from mailstream.observability.http import serve_health
from mailstream.observability.logs import configure_logging, get_logger


async def _run(worker: DeliveryWorker, metrics_port: int) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    runner = await serve_health("127.0.0.1", metrics_port, lambda: worker.healthy)
    try:
        await worker.run()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailstream-delivery")
    parser.add_argument("--config", help="YAML configuration file")
    parser.add_argument("--metrics-port", type=int, help="health and /metrics port (overrides the file)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("delivery")
    try:
        ensure_topics(config.kafka.bootstrap_servers, ALL_TOPICS, replication_factor=config.kafka.replication_factor)
    except KafkaUnavailable as exc:
        print(f"delivery: {exc}", file=sys.stderr)
        return 1
    get_logger(__name__).info("starting", bootstrap=config.kafka.bootstrap_servers,
                              smarthost=config.delivery.smarthost)
    asyncio.run(_run(DeliveryWorker(config, system_clock), args.metrics_port or config.delivery.metrics_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
