"""Without a relay or smarthost the worker looks up the domain's MX (dnspython against a DNS server on
loopback) and connects to the exchangers in preference order; DNS refusals become replies, a DNS server
that does not answer defers, a host that refuses before any mail is skipped for the next one, and no
address the outbound policy denies is ever connected to.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

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
                ("slow.test", "TXT"): ["x"],  # no MX; its A lookup is never answered
                ("broken.test", "TXT"): ["x"],  # no MX; its A lookup fails (SERVFAIL)
                ("slowmx.test", "MX"): ["10 mx.slowmx.test."],
                ("slowmxs.test", "MX"): [f"{n} mx{n}.slowmx.test." for n in range(1, 6)],
                **{(f"mx{n}.slowmx.test", "TXT"): ["x"] for n in range(1, 6)},
                ("mx.slowmx.test", "TXT"): ["x"],
                ("private.test", "MX"): ["10 mx.private.test."],
                ("mx.private.test", "A"): ["10.0.0.1"],
                ("loop.test", "A"): ["127.0.0.1"],
                ("mixed.test", "MX"): ["10 inside.mixed.test.", "20 outside.mixed.test."],
                ("inside.mixed.test", "A"): ["10.0.0.1"],
                ("outside.mixed.test", "A"): ["127.0.0.4"],
                ("refused.test", "MX"): ["10 refuser.refused.test.", "20 up.refused.test."],
                ("refuser.refused.test", "A"): ["127.0.0.5"],
                ("up.refused.test", "A"): ["127.0.0.1"],
                ("down.refused.test", "MX"): ["10 refuser.refused.test.", "20 down.two.test."],
                ("alone.refused.test", "MX"): ["10 refuser.refused.test."],
            },
            silent={
                ("slow.test", "A"),
                ("slow.test", "AAAA"),
                ("mx.slowmx.test", "A"),
                ("mx.slowmx.test", "AAAA"),
                *((f"mx{n}.slowmx.test", kind) for n in range(1, 6) for kind in ("A", "AAAA")),
            },
            failing={("broken.test", "A"), ("broken.test", "AAAA")},
        ) as dns,
    ):
        yield dns, sink, other


LOOPBACK = {"allow": ["127.0.0.0/8"]}  # the test servers are on loopback, which the default denies


async def deliver(
    dns: LoopbackDns, sink: RecordingSink, domain: str, outbound: dict[str, Any] = LOOPBACK, **delivery: Any
) -> tuple[int, str | None, str | None]:
    config = parse_config(
        {
            "ingest": {"message_id_domain": "w.test"},
            "delivery": {
                "ehlo_domain": "w.test",
                "smtp_port": sink.address[1],
                "nameservers": [dns.address],
                "connect_timeout": "1s",
                "outbound": outbound,
                **delivery,
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


@pytest.mark.parametrize("domain", ["slow.test", "broken.test", "slowmx.test"])
async def test_an_address_lookup_that_fails_defers_and_never_bounces(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink], domain: str
) -> None:
    """A timeout or SERVFAIL for the A/AAAA of a domain without MX (or of an MX host) is not "no address"."""
    dns, sink, _ = mx
    assert await deliver(dns, sink, domain) == (451, "4.4.3", None)
    assert sink.connections == []


def denied(via: str) -> float:
    return REGISTRY.get_sample_value("mailstream_delivery_denied_addresses_total", {"via": via}) or 0.0


@pytest.mark.parametrize(
    ("domain", "address"), [("private.test", "10.0.0.1"), ("loop.test", "127.0.0.1"), ("order.test", "127.0.0.4")]
)
async def test_the_default_policy_never_connects_to_special_addresses(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink], domain: str, address: str
) -> None:
    dns, sink, other = mx
    before = denied("mx")
    code, enhanced, peer = await deliver(dns, sink, domain, outbound={})
    assert (code, enhanced, peer) == (550, "5.7.1", None)
    assert sink.connections == []
    assert other.connections == []
    assert denied("mx") > before


async def test_a_denied_exchanger_is_skipped_for_an_allowed_one(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink],
) -> None:
    dns, sink, other = mx
    code, _, peer = await deliver(dns, sink, "mixed.test", outbound={"allow": ["127.0.0.4"]})
    assert (code, peer) == (250, other.hostport)


async def test_an_allowed_endpoint_is_connected_to(mx: tuple[LoopbackDns, RecordingSink, RecordingSink]) -> None:
    dns, sink, _ = mx
    assert (await deliver(dns, sink, "loop.test", outbound={"allow": [sink.hostport]}))[0] == 250
    assert len(sink.messages) == 1


class Refuser:
    """An SMTP server that greets every connection with `greeting` and hangs up."""

    def __init__(self, host: str, port: int, greeting: bytes) -> None:
        self._sock = socket.create_server((host, port))
        self._sock.settimeout(0.2)
        self._greeting = greeting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.greeted = 0

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(self._greeting)
                self.greeted += 1

    def __enter__(self) -> Refuser:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.mark.parametrize("greeting", [b"554 5.7.1 no mail from you\r\n", b"421 4.3.2 busy\r\n"])
async def test_a_host_that_refuses_in_its_greeting_is_skipped_for_the_next(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink], greeting: bytes
) -> None:
    """RFC 5321 §5.1: a 5xx (or 4xx) greeting from one MX is that host's answer, not the domain's."""
    dns, sink, _ = mx
    with Refuser("127.0.0.5", sink.address[1], greeting) as refuser:  # the preferred exchanger
        code, _, peer = await deliver(dns, sink, "refused.test")
    assert refuser.greeted == 1
    assert (code, peer) == (250, sink.hostport)
    assert [m.rcpt_tos for m in sink.messages] == [("rcpt@refused.test",)]


async def test_when_every_host_refuses_a_transient_failure_defers(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink],
) -> None:
    """One host greeting 554 and the other not answering: the attempt defers, since the other may come back."""
    dns, sink, _ = mx
    with Refuser("127.0.0.5", sink.address[1], b"554 5.7.1 no\r\n"):
        code, enhanced, _ = await deliver(dns, sink, "down.refused.test")
    assert (code, enhanced) == (451, "4.4.1")


async def test_when_every_host_refuses_permanently_the_reply_is_theirs(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink],
) -> None:
    dns, sink, _ = mx
    with Refuser("127.0.0.5", sink.address[1], b"554 5.7.1 no mail from you\r\n"):
        code, enhanced, peer = await deliver(dns, sink, "alone.refused.test")
    assert (code, enhanced, peer) == (554, "5.7.1", f"127.0.0.5:{sink.address[1]}")


async def test_slow_address_lookups_end_with_the_attempts_deadline(
    mx: tuple[LoopbackDns, RecordingSink, RecordingSink],
) -> None:
    """Five exchangers whose A/AAAA are never answered would take 10 s of 1 s lookups; the attempt has 2 s."""
    dns, sink, _ = mx
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await deliver(dns, sink, "slowmxs.test", attempt_timeout="2s") == (451, "4.4.3", None)
    assert loop.time() - started < 4.0
