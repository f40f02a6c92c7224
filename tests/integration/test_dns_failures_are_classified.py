"""The delivery worker's own DNS and policy replies, from a real lookup against the loopback DNS server, end the
transaction in stage 1 classified by their codes: a null MX or a missing domain is BadDomain (hard), a lookup that
fails is DNSFailure (soft, deferred), an exchanger the outbound policy denies is PolicyRelated (block). The domains
are named like block lists (`rbl`, `spamhaus`), which the wording rules would take a server's reply for.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from mailstream.config.model import parse_config
from mailstream.core.backoff import RetryPolicy
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.clock import system_clock
from mailstream.delivery.routes import route_for
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events import fixtures
from mailstream.events.records import DeliveryResponse, SmtpResponse
from mailstream.events.status import changed
from mailstream.scheduler.lifecycle import on_response
from tests.infra.dns_server import LoopbackDns

pytestmark = pytest.mark.integration


@pytest.fixture
def dns() -> Iterator[LoopbackDns]:
    with LoopbackDns(
        {
            ("rbl.test", "MX"): ["0 ."],  # RFC 7505 null MX
            ("spamhaus.test", "MX"): ["10 mx.spamhaus.test."],
            ("mx.spamhaus.test", "A"): ["10.0.0.1"],  # private: the default outbound policy denies it
            ("dnsbl.test", "TXT"): ["x"],  # no MX; its address lookups fail
        },
        failing={("dnsbl.test", "A"), ("dnsbl.test", "AAAA")},
    ) as server:
        yield server


async def reply(dns: LoopbackDns, domain: str) -> SmtpResponse:
    config = parse_config(
        {
            "ingest": {"message_id_domain": "w.test"},
            "delivery": {"ehlo_domain": "w.test", "nameservers": [dns.address], "connect_timeout": "1s"},
        },
        env={},
    )
    worker = DeliveryWorker(config, system_clock)
    source = config.egress.source("unspecified")
    path = worker.dispatcher(source, route_for(source, config.delivery, domain))
    attempt = await path.deliver("from@w.test", f"rcpt@{domain}", b"Subject: mx\r\n\r\nhi\r\n", 30.0)
    await path.close()
    assert attempt is not None
    return attempt.response


def stage_1_ends(response: SmtpResponse) -> tuple[str, str | None, str | None, str, str | None, str | None]:
    """The status and the log record stage 1 writes for the attempt's reply."""
    tx = changed(fixtures.status(), status="in_delivery", num_attempts=0, attempts=())
    q = fixtures.queued().model_copy(update={"transaction": tx})
    outcome = "PERMANENT" if response.code >= 500 else "TRANSIENT"
    resp = fixtures.response().model_copy(update={"outcome": outcome, "response": response})
    assert isinstance(resp, DeliveryResponse)
    effects = on_response(q, resp, RetryPolicy(), BounceClassifier.default(), fixtures.T0, random.Random(1))
    [status] = effects.statuses
    [log] = effects.logs
    return (
        status.status,
        status.bounce_classification,
        status.bounce_type,
        log.type,
        log.bounce_classification,
        log.bounce_type,
    )


@pytest.mark.parametrize(
    ("domain", "codes", "ends"),
    [
        ("rbl.test", (556, "5.1.10"), ("bounced", "BadDomain", "hard", "Bounce", "BadDomain", "hard")),
        ("nxdomain.rbl.test", (550, "5.1.2"), ("bounced", "BadDomain", "hard", "Bounce", "BadDomain", "hard")),
        ("spamhaus.test", (550, "5.7.1"), ("bounced", "PolicyRelated", "block", "Bounce", "PolicyRelated", "block")),
        ("dnsbl.test", (451, "4.4.3"), ("deferred", None, None, "TransientFailure", "DNSFailure", "soft")),
    ],
)
async def test_the_workers_dns_and_policy_replies_are_classified_by_their_codes(
    dns: LoopbackDns, domain: str, codes: tuple[int, str], ends: tuple[str, ...]
) -> None:
    response = await reply(dns, domain)
    assert (response.code, response.enhanced_code) == codes
    assert response.content.startswith("mailstream")
    assert stage_1_ends(response) == ends
