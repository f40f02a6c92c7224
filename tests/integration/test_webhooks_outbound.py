"""webhooks.outbound at connection time, in the service as a process on a real broker: an endpoint's host is
resolved on every connection and only an allowed address connected to, so a name that resolves to loopback
(`localhost`, as a name re-pointed after registration would) is never POSTed to. Each refused POST is a failed
attempt on mail.webhook-attempts naming why; the endpoint the operator allowed (by its address and port) gets
its events."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mailstream.events.records import WebhookAttempt
from mailstream.events.serde import decode
from mailstream.events.topics import WEBHOOK_ATTEMPTS
from tests.infra.topics import end_offsets, read_all
from tests.infra.webhooks import LOOPBACK, Receiver, WebhooksProcess, endpoint, wait_for, write_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def attempts_of(bootstrap: str, tenant: str, start: list[int]) -> list[WebhookAttempt]:
    records = read_all(bootstrap, WEBHOOK_ATTEMPTS.name, WEBHOOK_ATTEMPTS.partitions, start=start)
    found = [decode(value, WebhookAttempt) for _, _, _, value in records if value is not None]
    return [a for a in found if a.tenant == tenant]


async def test_a_name_resolving_to_a_denied_address_is_not_posted_to(kafka_bootstrap: str, tmp_path: Path) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    allowed, denied = await Receiver().start(), await Receiver().start()
    service = WebhooksProcess(
        kafka_bootstrap,
        tmp_path,
        [
            endpoint("allowed", tenant, allowed, ["delivered"], url=f"http://localhost:{allowed.port}/hook"),
            endpoint("denied", tenant, denied, ["delivered"], url=f"http://localhost:{denied.port}/hook"),
        ],
        # only the one receiver's endpoint, not loopback as a whole
        extra={"outbound": {"allow": [f"{LOOPBACK}:{allowed.port}"]}, "retry_interval": "0.2s"},
    )
    start = end_offsets(kafka_bootstrap, WEBHOOK_ATTEMPTS.name, WEBHOOK_ATTEMPTS.partitions)
    await service.start()
    try:
        written = await write_events(kafka_bootstrap, tenant, 2, steps=("Delivery",))
        await wait_for(lambda: len(allowed.accepted_ids()) == 2, 60, "both events at the allowed endpoint", service.log)

        def refused() -> list[WebhookAttempt]:
            return [a for a in attempts_of(kafka_bootstrap, tenant, start) if a.endpoint_id == "config-denied"]

        await wait_for(lambda: len(refused()) >= 2, 60, "two refused attempts recorded", service.log)
        assert denied.received == []  # never connected to, retries included
        first = refused()[0]
        assert (first.outcome, first.status_code, first.attempt) == ("RETRYING", None, 1)
        assert first.transaction_id in written
        assert first.error is not None
        assert first.error.startswith("not connected: localhost is at ")  # ::1 too, where the resolver names it
        assert f"{LOOPBACK} (loopback address)" in first.error
        assert first.error.endswith(", denied by webhooks.outbound")
        delivered = [a for a in attempts_of(kafka_bootstrap, tenant, start) if a.endpoint_id == "config-allowed"]
        assert {a.outcome for a in delivered} == {"DELIVERED"}
        assert "webhook_address_denied" in service.log()
    finally:
        service.stop()
        await allowed.stop()
        await denied.stop()
