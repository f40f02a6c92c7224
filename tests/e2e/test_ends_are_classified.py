"""Every end is classified, as GET /api/transactions/{id} shows, against the real pipeline (broker, scheduler,
delivery looking up MX records on the loopback DNS server): a null MX bounces BadDomain (hard) although the domain
is named like a block list, a cancel is an AdminBounce, and the null queue's discard one too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.dns_server import LoopbackDns
from tests.infra.stack import ACME_KEY, ADMIN_KEY, Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def mx_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        LoopbackDns({("rbl.test", "MX"): ["0 ."]}) as dns,  # RFC 7505: the domain accepts no mail
        running_stack(
            kafka_bootstrap,
            sink.address,
            tmp_path_factory.mktemp("classified"),
            delivery={"smarthost": None, "nameservers": [dns.address]},
        ) as s,
    ):
        yield s


def submit(stack: Stack, recipient: str, key: str = ACME_KEY, **metadata: Any) -> str:
    with stack.client(key) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "sender@acme.test",
                "recipients": [{"email": recipient}],
                "metadata": metadata,
                "content": {"subject": "s", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    return str(r.json()["transactions"][0]["id"])


def classified(status: dict[str, Any]) -> tuple[str, str, str]:
    return status["status"], status["bounce_classification"], status["bounce_type"]


def test_a_null_mx_bounces_bad_domain(mx_stack: Stack) -> None:
    tx = submit(mx_stack, f"{uuid.uuid4().hex[:8]}@rbl.test")
    status = mx_stack.wait_status(tx, {"bounced", "delivered", "deferred"}, key=ACME_KEY)
    assert classified(status) == ("bounced", "BadDomain", "hard")
    assert (status["last_response"]["code"], status["last_response"]["enhanced_code"]) == (556, "5.1.10")


def test_a_cancel_is_an_admin_bounce(mx_stack: Stack) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    tx = submit(mx_stack, "later@example.com", send_at=later)
    mx_stack.wait_status(tx, {"scheduled"}, key=ACME_KEY)
    with mx_stack.client(ACME_KEY) as client:
        assert client.post(f"/api/transactions/{tx}/cancel").status_code == 200
    status = mx_stack.wait_status(tx, {"cancelled"}, key=ACME_KEY)
    assert classified(status) == ("cancelled", "AdminBounce", "soft")


def test_the_null_queues_discard_is_an_admin_bounce(mx_stack: Stack) -> None:
    tx = submit(mx_stack, "x@example.com", ADMIN_KEY, queue="null")  # only an admin names any queue
    status = mx_stack.wait_status(tx, {"cancelled", "delivered"})
    assert classified(status) == ("cancelled", "AdminBounce", "soft")
