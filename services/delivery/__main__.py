"""`python -m mailstream.delivery --config FILE`: run one delivery worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

from mailstream.cli import prepare, service_parser
from mailstream.core.clock import system_clock
from mailstream.delivery.worker import DeliveryWorker
from mailstream.observability.http import serve_health
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
STOP_LIMIT = 10.0  # seconds from SIGTERM to exit, whatever the cluster does


def _stop(worker: DeliveryWorker) -> None:
    """Stop gracefully; a step that still hangs (a client call into a lost cluster) does not keep the
    process alive past STOP_LIMIT."""

    def force() -> None:
        log.error("forced_exit", after_seconds=STOP_LIMIT - 0.3)
        os._exit(1)

    timer = threading.Timer(STOP_LIMIT - 0.3, force)
    timer.daemon = True
    timer.start()
    worker.stop()


async def _run(worker: DeliveryWorker, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop, worker)
    runner = await serve_health(host, port, lambda: worker.healthy, lambda: worker.state)
    try:
        await worker.run()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = service_parser("delivery")
    parser.add_argument("--metrics-port", type=int, help="health and /metrics port (overrides the file)")
    args = parser.parse_args(argv)
    config = prepare("delivery", args)
    log.info("starting", bootstrap=config.kafka.bootstrap_servers, smarthost=config.delivery.smarthost)
    asyncio.run(
        _run(
            DeliveryWorker(config, system_clock),
            config.delivery.metrics_host,
            args.metrics_port or config.delivery.metrics_port,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
