"""`python -m mailstream.gateway --config FILE`: serve the configured SMTP listeners."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
import sys
import threading
from datetime import timedelta

from confluent_kafka import Producer
from prometheus_client import Gauge

from mailstream.cli import prepare, service_parser
from mailstream.config.model import Config
from mailstream.core.clock import system_clock
from mailstream.events.bodies import put_body_blocking
from mailstream.events.group_commit import TransactionalWriter
from mailstream.events.kafka import Cluster, EventProducer, producer_config
from mailstream.events.processor import TransactionalProcessor
from mailstream.events.topics import DEAD_LETTER, EVENTS, NOTICE_STATE
from mailstream.gateway.attempts import AttemptWatch
from mailstream.gateway.notifier import Notifier
from mailstream.gateway.server import Gateway
from mailstream.gateway.session import GatewayParts
from mailstream.intake.capacity_view import CapacityView
from mailstream.intake.dkim import DkimKeyError, DkimSigner
from mailstream.intake.submission import Submitter
from mailstream.intake.suppression_view import SuppressionView
from mailstream.intake.tenant_policy import TenantPolicies, loopback, unrestricted_senders
from mailstream.observability.http import serve_health
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
NOTIFIER_HEALTHY = Gauge("mailstream_gateway_notifier_healthy", "1 while the DSN stage holds partitions and commits")
NOTICE_MARGIN = timedelta(seconds=5)  # beyond the cut-through wait: the gateway writes its Rejection at once
SHUTDOWN_GRACE = 30.0  # seconds for transactions in progress; below Kubernetes' default 30 s + the cut-through wait


def notifier(config: Config) -> TransactionalProcessor:
    """The DSN stage over mail.events; it holds a failure past the cut-through wait (plus time for the gateway
    to record that it told the client) before deciding that a notice is owed."""
    bootstrap = Cluster.of(config.kafka)
    body_producer = Producer(producer_config(bootstrap))
    handler = Notifier(
        reporting_mta=config.gateway.hostname,
        hold=config.gateway.cut_through_wait + NOTICE_MARGIN,
        write_body=functools.partial(put_body_blocking, body_producer),
    )
    return TransactionalProcessor(
        bootstrap=bootstrap,
        group_id=f"{config.gateway.app_id}-notices",
        inputs=[EVENTS.name],
        changelog=NOTICE_STATE.name,
        partitions=EVENTS.partitions,
        handler=handler,
        clock=system_clock,
        tick_interval=1.0,
        name="notices",
        dead_letter=DEAD_LETTER.name,
    )


def _run_notifier(
    processor: TransactionalProcessor, stop: threading.Event, stopping: asyncio.Event, loop: asyncio.AbstractEventLoop
) -> None:
    try:
        processor.run(stop)
    except BaseException as exc:  # a fatal stage error ends the process: let the supervisor restart it
        log.error("notifier_failed", error=str(exc))
        loop.call_soon_threadsafe(stopping.set)


async def _run(config: Config, web_port: int) -> int:
    bootstrap = Cluster.of(config.kafka)
    # A write the cluster cannot take within 30 s is answered 451 rather than holding the client for librdkafka's
    # default of five minutes.
    try:
        signer = DkimSigner(config.dkim)
    except DkimKeyError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    producer = EventProducer(bootstrap, **{"message.timeout.ms": 30_000})
    capacity = CapacityView()
    suppressions = SuppressionView()  # RCPT answers 451 until it has read the list
    watch = AttemptWatch() if config.gateway.cut_through_wait.total_seconds() > 0 else None
    # A message's records are written in one transaction (nothing half-written when the cluster fails mid-way); the
    # id is stable across restarts, so a restarted gateway aborts at once what its predecessor left open.
    writer = TransactionalWriter(
        bootstrap, f"{config.gateway.app_id}-{socket.gethostname()}-{web_port}", transaction_timeout_s=60.0
    )
    writer.start()
    policies = TenantPolicies(config.tenants)
    open_tenants = unrestricted_senders(policies, [u.tenant for u in config.gateway.users if not u.sender_domains])
    if open_tenants and any(x.mode == "submission" and not loopback(x.host) for x in config.gateway.listeners):
        log.warning("sender_domains_unrestricted", tenants=open_tenants, detail="set tenants.<t>.sender_domains")
    submitter = Submitter(
        producer, system_clock, capacity.refusal, signer, writer, policies, suppressed=suppressions.refusal
    )
    parts = GatewayParts(config.gateway, submitter, producer, capacity, watch, system_clock, suppressions)
    gateway = Gateway(config.gateway, parts)
    try:
        await gateway.start()
    except (OSError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    tails = [asyncio.create_task(capacity.run(bootstrap)), asyncio.create_task(suppressions.run(bootstrap))]
    if watch is not None:
        tails.append(asyncio.create_task(watch.run(bootstrap)))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    stop_notices = threading.Event()
    notices = notifier(config) if config.gateway.notices else None
    thread = None
    if notices is not None:
        thread = threading.Thread(target=_run_notifier, args=(notices, stop_notices, stopping, loop), name="notices")
        thread.start()
    if notices is not None:  # a replica beyond the partition count owns none, and serves SMTP all the same
        NOTIFIER_HEALTHY.set_function(lambda: float(notices.healthy))
    # Ready while it serves SMTP; a failed notifier stops the process (_run_notifier), so it is not ready then.
    runner = await serve_health(
        config.gateway.web_host, web_port, lambda: suppressions.caught_up.is_set() and not stopping.is_set()
    )
    log.info("ready", listeners=[f"{r.listener.name}:{r.port}" for r in gateway.listeners])
    await stopping.wait()
    log.info("stopping")
    await gateway.stop(SHUTDOWN_GRACE)
    stop_notices.set()
    if thread is not None:
        await asyncio.to_thread(thread.join)
    for tail in tails:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail
    await writer.close()
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
