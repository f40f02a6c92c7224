"""`python -m mailstream.webhooks --config FILE`: POST mail.events to the registered endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys

from mailstream.cli import prepare, service_parser
from mailstream.config.model import Config
from mailstream.core.clock import system_clock
from mailstream.events.kafka import Cluster, EventProducer
from mailstream.events.lane_consumer import LaneConsumer
from mailstream.events.records import WebhookEndpoint
from mailstream.events.topics import EVENTS
from mailstream.observability.http import serve_health
from mailstream.observability.logs import get_logger
from mailstream.webhooks.delivery import Deliverer, backoff_of
from mailstream.webhooks.endpoints import Endpoints
from mailstream.webhooks.events import from_config
from mailstream.webhooks.http_post import HttpPoster
from mailstream.webhooks.supervisor import Supervisor
from mailstream.webhooks.worker import EndpointWorker

log = get_logger(__name__)


async def _run(config: Config, web_port: int) -> int:
    bootstrap, section = Cluster.of(config.kafka), config.webhooks
    producer = EventProducer(bootstrap)
    rng = random.Random()
    outbound = section.outbound.policy()

    async def deliver(endpoint: WebhookEndpoint) -> None:
        poster = HttpPoster(endpoint.timeout_ms / 1000, outbound)
        deliverer = Deliverer(
            endpoint,
            poster,
            producer,
            backoff_of(endpoint, section.retry_interval, section.max_retry_interval),
            system_clock,
            asyncio.sleep,
            rng,
        )
        consumer = LaneConsumer(bootstrap, f"{section.app_id}-{endpoint.id}", EVENTS.name, endpoint.created_at)
        try:
            await EndpointWorker(endpoint.id, consumer, deliverer.handle).run()
        finally:
            await poster.close()

    supervisor = Supervisor(deliver)
    endpoints = Endpoints([from_config(e, system_clock()) for e in section.endpoints])
    tail = asyncio.create_task(endpoints.run(bootstrap, supervisor.reconcile))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    tail.add_done_callback(lambda _: stopping.set())  # the endpoint list is gone: let the supervisor restart us
    runner = await serve_health(section.web_host, web_port, lambda: endpoints.caught_up and not stopping.is_set())
    log.info("ready", web_port=web_port, configured=len(section.endpoints))
    await stopping.wait()
    log.info("stopping")
    failed = tail.done() and not tail.cancelled() and tail.exception() is not None
    tail.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await tail
    await supervisor.stop_all()  # each endpoint's consumer commits what it finished and leaves its group
    await producer.close()
    await runner.cleanup()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = service_parser("webhooks")
    parser.add_argument("--web-port", type=int, help="health and /metrics port (overrides the file)")
    args = parser.parse_args(argv)
    config = prepare("webhooks", args)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per POST; the attempts topic has them all
    return asyncio.run(_run(config, args.web_port or config.webhooks.web_port))


if __name__ == "__main__":
    sys.exit(main())
