"""`python -m mailstream.gateway --config FILE`: serve the configured SMTP listeners."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from mailstream.cli import prepare, service_parser
from mailstream.config.model import Config
from mailstream.core.clock import system_clock
from mailstream.events.kafka import EventProducer
from mailstream.gateway.attempts import AttemptWatch
from mailstream.gateway.server import Gateway
from mailstream.gateway.session import GatewayParts
from mailstream.intake.capacity_view import CapacityView
from mailstream.intake.submission import Submitter
from mailstream.observability.http import serve_health
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
SHUTDOWN_GRACE = 30.0  # seconds for transactions in progress; below Kubernetes' default 30 s + the cut-through wait


async def _run(config: Config, web_port: int) -> int:
    bootstrap = config.kafka.bootstrap_servers
    # A write the cluster cannot take within 30 s is answered 451 rather than holding the client for librdkafka's
    # default of five minutes.
    producer = EventProducer(bootstrap, **{"message.timeout.ms": 30_000})
    capacity = CapacityView()
    watch = AttemptWatch() if config.gateway.cut_through_wait.total_seconds() > 0 else None
    parts = GatewayParts(config.gateway, Submitter(producer, system_clock, capacity.refusal), producer, capacity,
                         watch, system_clock)
    gateway = Gateway(config.gateway, parts)
    try:
        await gateway.start()
    except (OSError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    tails = [asyncio.create_task(capacity.run(bootstrap))]
    if watch is not None:
        tails.append(asyncio.create_task(watch.run(bootstrap)))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runner = await serve_health("127.0.0.1", web_port, lambda: not stopping.is_set())
    log.info("ready", listeners=[f"{r.listener.name}:{r.port}" for r in gateway.listeners])
    await stopping.wait()
    log.info("stopping")
    await gateway.stop(SHUTDOWN_GRACE)
    for tail in tails:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail
    await producer.close()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = service_parser("gateway")
    parser.add_argument("--web-port", type=int, help="health and /metrics port (overrides the file)")
    args = parser.parse_args(argv)
    config = prepare("gateway", args)
    if not config.gateway.listeners:
        print("gateway: no listeners configured (gateway.listeners)", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; the stdlib loop works too
        return asyncio.run(_run(config, args.web_port or config.gateway.web_port))
    return uvloop.run(_run(config, args.web_port or config.gateway.web_port))


if __name__ == "__main__":
    sys.exit(main())
