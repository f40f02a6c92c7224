"""`python -m mailstream.ingest --config FILE`: serve the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI

from mailstream.cli import prepare, service_parser
from mailstream.core.clock import system_clock
from mailstream.events.group_commit import TransactionalWriter
from mailstream.events.kafka import Cluster, EventProducer
from mailstream.ingest.app import create_app
from mailstream.ingest.audit import Auditor
from mailstream.ingest.audit_view import AuditView, audit_router
from mailstream.ingest.dashboard import dashboard_router
from mailstream.ingest.http_guard import guard, server_options
from mailstream.ingest.kumo_admin import kumo_admin_router
from mailstream.ingest.operation_view import OperationView
from mailstream.ingest.operations_api import operations_router
from mailstream.ingest.queue_api import queue_router
from mailstream.ingest.read_model.api import read_model_router
from mailstream.ingest.read_model.service import ReadModel
from mailstream.ingest.status_view import StatusStore, StatusView
from mailstream.ingest.suppression_api import suppression_router
from mailstream.ingest.webhook_api import webhook_router
from mailstream.ingest.webhook_view import WebhookView
from mailstream.intake.capacity_view import CapacityView
from mailstream.intake.dkim import DkimKeyError, DkimSigner
from mailstream.intake.submission import Submitter
from mailstream.intake.suppression_view import SuppressionView
from mailstream.intake.tenant_policy import TenantPolicies, loopback, unrestricted_senders
from mailstream.observability.logs import get_logger

LIST_WAIT = 30.0  # seconds ingest waits at start for the suppression list to be read


def main(argv: list[str] | None = None) -> int:
    parser = service_parser("ingest")
    parser.add_argument("--port", type=int, help="listen port (overrides the file)")
    args = parser.parse_args(argv)
    config = prepare("ingest", args)
    log = get_logger(__name__)
    if not config.ingest.api_keys:
        log.warning("no_api_keys", detail="every request will get 401 until ingest.api_keys is set")
    policies = TenantPolicies(config.tenants)
    open_tenants = unrestricted_senders(policies, [k.tenant for k in config.ingest.api_keys if k.tenant])
    if open_tenants and not loopback(config.ingest.host):
        log.warning("sender_domains_unrestricted", tenants=open_tenants, detail="set tenants.<t>.sender_domains")
    bootstrap = Cluster.of(config.kafka)
    view = StatusView(StatusStore(config.ingest.status_db), config.ingest.max_waiters)
    capacity = CapacityView()
    operations = OperationView()
    suppressions = SuppressionView()
    webhooks = WebhookView(config.webhooks.attempts_kept)
    messages = ReadModel(config, system_clock, bootstrap)  # its projection runs on a thread of its own
    producer = EventProducer(bootstrap)  # its delivery-report thread needs no event loop yet
    port = args.port or config.ingest.port
    # Stable across restarts, so a restarted replica aborts what its predecessor left open (group_commit).
    writer = TransactionalWriter(
        bootstrap,
        config.ingest.transactional_id or f"mailstream-ingest-{socket.gethostname()}-{port}",
        transaction_timeout_s=max(30.0, 2 * config.ingest.request_deadline.total_seconds()),
    )

    audit = AuditView()
    auditor = Auditor(writer, system_clock, audit)  # every operator action and its records in one transaction

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        writer.start()  # aborts at once what this replica's predecessor left open
        tails = [
            asyncio.create_task(view.run(bootstrap)),
            asyncio.create_task(capacity.run(bootstrap)),
            asyncio.create_task(operations.run(bootstrap)),
            asyncio.create_task(app.state.answers.run(bootstrap)),
        ]
        tails.append(asyncio.create_task(webhooks.run(bootstrap)))
        tails.append(asyncio.create_task(audit.run(bootstrap)))
        tails.append(asyncio.create_task(suppressions.run(bootstrap)))
        try:  # serve once the list is read; a cluster away at start answers 503 until then
            await asyncio.wait_for(suppressions.caught_up.wait(), LIST_WAIT)
        except TimeoutError:
            log.warning("suppressions_not_read", detail=f"not read within {LIST_WAIT:g} s: inject answers 503 until")
        messages.start()
        tails.append(asyncio.create_task(messages.run_gauges()))
        log.info("ready", port=port)
        try:
            yield
        finally:
            for tail in tails:
                tail.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tail
            await writer.close()
            await producer.close()
            view.store.close()
            messages.close()
            app.state.answers.store.close()
            app.state.render_pool.close()

    try:
        signer = DkimSigner(config.dkim)
    except DkimKeyError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    # Draining/disabled queues refused early; each request's records written in one transaction.
    submitter = Submitter(
        producer, system_clock, capacity.refusal, signer, writer, policies, suppressed=suppressions.refusal
    )
    app = create_app(
        config.ingest,
        submitter,
        view,
        system_clock,
        lifespan=lifespan,
        routers=[
            queue_router(config, capacity, producer, system_clock, view, auditor),
            webhook_router(config, webhooks, producer, system_clock, auditor),
            suppression_router(config, suppressions, producer, system_clock, auditor),
            audit_router(config, audit),
            kumo_admin_router(config, capacity, view, operations, system_clock, auditor),
            operations_router(config, capacity, view, operations, system_clock, auditor),
            read_model_router(config, messages.store, system_clock),
            dashboard_router(),  # /ui: static files; every figure on it comes from the routes above
        ],
    )
    guard(app, config.ingest)  # the body deadline; the header timeout and connection cap are in the protocol
    uvicorn.run(app, host=config.ingest.host, port=port, **server_options(config.ingest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
