"""`python -m mailstream.delivery --config FILE`: run one delivery worker."""

from __future__ import annotations

import asyncio
import signal
import sys

from mailstream.cli import prepare, service_parser
from mailstream.core.clock import system_clock
from mailstream.delivery.worker import DeliveryWorker
from mailstream.observability.http import serve_health
from mailstream.observability.logs import get_logger


async def _run(worker: DeliveryWorker, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    runner = await serve_health(host, port, lambda: worker.healthy)
    try:
        await worker.run()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = service_parser("delivery")
    parser.add_argument("--metrics-port", type=int, help="health and /metrics port (overrides the file)")
    args = parser.parse_args(argv)
    config = prepare("delivery", args)
    get_logger(__name__).info("starting", bootstrap=config.kafka.bootstrap_servers,
                              smarthost=config.delivery.smarthost)
    asyncio.run(_run(DeliveryWorker(config, system_clock), config.delivery.metrics_host,
                     args.metrics_port or config.delivery.metrics_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
