"""The gateway's listeners in the test's own event loop, over an in-memory event log: real SMTP on
loopback (aiosmtpd serving, smtplib/aiosmtplib calling), no broker. What the gateway wrote is read back
from the twin's topics; a first delivery attempt is fed to its AttemptWatch as mail.responses would bring it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailstream.config.gateway import GatewayConfig
from mailstream.config.tenants import TenantConfig
from mailstream.core.clock import ManualClock
from mailstream.events.memory import MemoryProducer, MemoryTransactions
from mailstream.events.records import AcceptedMessage, DeliveryResponse, QueueCommand, SmtpResponse
from mailstream.events.serde import decode
from mailstream.events.topics import ACCEPTED, BODIES, QUEUE_COMMANDS, RESPONSES
from mailstream.gateway.attempts import AttemptWatch
from mailstream.gateway.server import Gateway
from mailstream.gateway.session import GatewayParts
from mailstream.intake.capacity_view import CapacityView
from mailstream.intake.submission import Submitter
from mailstream.intake.suppression_view import SuppressionView
from mailstream.intake.tenant_policy import TenantPolicies
from tests.infra.gateway import GatewayPorts, gateway_section
from tests.infra.until import until as until

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@dataclass
class GatewayApp:
    gateway: Gateway
    producer: MemoryProducer
    watch: AttemptWatch
    clock: ManualClock
    ports: GatewayPorts
    transactions: MemoryTransactions

    def accepted(self) -> list[AcceptedMessage]:
        return [decode(r.value, AcceptedMessage) for r in self.producer.bus.read(ACCEPTED.name)]

    def bodies(self) -> int:
        return len(self.producer.bus.read(BODIES.name))

    def cancels(self) -> list[QueueCommand]:
        return [decode(r.value, QueueCommand) for r in self.producer.bus.read(QUEUE_COMMANDS.name)]

    def answer(self, message: AcceptedMessage, code: int, enhanced: str, text: str) -> None:
        """The first attempt of `message` ends with this reply, as a delivery worker writes it on mail.responses."""
        outcome = "DELIVERED" if code < 400 else "PERMANENT" if code >= 500 else "TRANSIENT"
        response = DeliveryResponse(
            id=message.id,
            attempt=1,
            attempt_id=f"{message.id}-1",
            queue=message.queue,
            outcome=outcome,
            response=SmtpResponse(code=code, enhanced_code=enhanced, content=text),
            egress_source="direct",
            egress_path="direct->sink",
            started_at=self.clock(),
            completed_at=self.clock(),
        )
        self.watch.apply(RESPONSES.encode(response))


@asynccontextmanager
async def gateway_app(
    workdir: Path,
    capacity: CapacityView | None = None,
    tenants: dict[str, Any] | None = None,
    suppressions: SuppressionView | None = None,
    **overrides: Any,
) -> AsyncIterator[GatewayApp]:
    """`tenants`: the configuration's `tenants` section (their rights: sender domains); `suppressions`: the lists
    both the RCPT check and the submission path read."""
    section, ports = gateway_section(workdir, **{"cut_through_wait": "0s", **overrides})
    config = GatewayConfig.model_validate(section)
    producer = MemoryProducer()
    clock = ManualClock(START)
    watch = AttemptWatch()
    transactions = MemoryTransactions(producer)  # as in production: a message's records all or none
    policies = TenantPolicies({name: TenantConfig.model_validate(entry) for name, entry in (tenants or {}).items()})
    suppressed = suppressions.refusal if suppressions is not None else None
    submitter = Submitter(producer, clock, writer=transactions, policies=policies, suppressed=suppressed)
    parts = GatewayParts(config, submitter, producer, capacity, watch, clock, suppressions)
    gateway = Gateway(config, parts)
    await gateway.start()
    try:
        yield GatewayApp(gateway, producer, watch, clock, ports, transactions)
    finally:
        await gateway.stop(grace=0.5)
