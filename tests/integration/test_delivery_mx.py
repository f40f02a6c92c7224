"""Without a relay or smarthost the worker looks up the domain's MX (dnspython against a DNS server on
loopback) and connects to the exchangers in preference order; DNS refusals become replies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailstream.config.model import parse_config
from mailstream.core.clock import system_clock
from mailstream.delivery.routes import route_for
from mailstream.delivery.worker import DeliveryWorker
from tests.infra.dns_server import LoopbackDns
from tests.infra.smtp_recorder import RecordingSink

pytestmark = pytest.mark.integration


@pytest.fixture
def mx() -> Iterator[tuple[LoopbackDns, RecordingSink, RecordingSink]]:
    with (
        RecordingSink() as sink,
        RecordingSink("127.0.0.4", port=sink.address[1]) as other,
        LoopbackDns(
            {
                ("order.test", "MX"): ["20 second.order.test.", "10 first.order.test."],
                ("first.order.test", "A"): ["127.0.0.4"],
                ("second.order.test", "A"): ["127.0.0.1"],
                # The preferred exchanger's address has no SMTP server: the worker must go on to the next one.
                ("two.test", "MX"): ["10 down.two.test.", "20 up.two.test."],
                ("down.two.test", "A"): ["127.0.0.9"],
                ("up.two.test", "A"): ["127.0.0.1"],
                ("implicit.test", "A"): ["127.0.0.1"],  # no MX: the domain is its own exchanger
                ("null.test", "MX"): ["0 ."],
                ("lost.test", "MX"): ["10 nowhere.lost.test."],  # the exchanger has no address
            }
        ) as dns,
    ):
        yield dns, sink, other


async def deliver(dns: LoopbackDns, sink: RecordingSink, domain: str) -> tuple[int, str | None, str | None]:
    config = parse_config(
        {
            "ingest": {"message_id_domain": "w.test"},
            "delivery": {
                "ehlo_domain": "w.test",
                "smtp_port": sink.address[1],
                "nameservers": [dns.address],
                "connect_timeout": "3s",
            },
        },
        env={},
    )
    worker = DeliveryWorker(config, system_clock)
    source = config.egress.source("unspecified")
    path = worker.dispatcher(source, route_for(source, config.delivery, domain))
    attempt = await path.deliver("from@w.test", f"rcpt@{domain}", b"Subject: mx\r\n\r\nhi\r\n", 30.0)
    await path.close()
    assert attempt is not None
    return attempt.response.code, attempt.response.enhanced_code, attempt.peer_address


async def test_the_preferred_exchanger_gets_the_message(mx: tuple[LoopbackDns, RecordingSink, RecordingSink]) -> None:
    dns, sink, first = mx
    code, _, peer = await deliver(dns, sink, "order.test")
    assert (code, peer) == (250, first.hostport)
    assert (len(first.messages), len(sink.messages)) == (1, 0)


async def test_an_exchanger_that_does_not_answer_is_skipped(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink],
) -> None:
    dns, sink, _ = mx
    code, _, peer = await deliver(dns, sink, "two.test")
    assert (code, peer) == (250, sink.hostport)
    assert [m.rcpt_tos for m in sink.messages] == [("rcpt@two.test",)]


async def test_a_domain_without_mx_is_its_own_exchanger(mx: tuple[LoopbackDns, RecordingSink, RecordingSink]) -> None:
    dns, sink, _ = mx
    assert (await deliver(dns, sink, "implicit.test"))[0] == 250


@pytest.mark.parametrize(
    ("domain", "code", "enhanced"),
    [
        ("null.test", 556, "5.1.10"),  # RFC 7505
        ("missing.test", 550, "5.1.2"),  # NXDOMAIN
        ("lost.test", 451, "4.4.4"),  # an exchanger without an address may come back
    ],
)
async def test_dns_refusals_are_answered_without_connecting(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink], domain: str, code: int, enhanced: str
) -> None:
    dns, sink, _ = mx
    assert await deliver(dns, sink, domain) == (code, enhanced, None)
    assert sink.connections == []
