"""TLS policy per egress path (`delivery.starttls`, a source's `starttls`, `egress.paths[].starttls`), against
real aiosmtpd MX hosts on loopback found through the loopback DNS server, certificates from a trustme CA.

`required`: STARTTLS with a certificate verified against the MX host name, else 451 4.7.5 and nothing
sent; `opportunistic`: any certificate, plaintext when STARTTLS is not offered, and a failed handshake is
tried again in plaintext on a new connection; `disabled`: never STARTTLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailstream.config.model import parse_config
from mailstream.core.clock import system_clock
from mailstream.delivery.smtp_client import SmtpAttempt
from mailstream.delivery.worker import DeliveryWorker
from tests.infra.dns_server import LoopbackDns
from tests.infra.smtp_recorder import RecordingSink, self_signed

pytestmark = pytest.mark.integration
MX = "mx.tls.test"


@dataclass(frozen=True)
class Authority:
    ca_file: Path
    issued: tuple[Path, Path]  # (certificate, key) for MX
    wrong_name: tuple[Path, Path]  # from the same CA, for another host


def _issue(authority: trustme.CA, name: str, folder: Path) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    issued = authority.issue_cert(name)
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    authority = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    return Authority(ca_file, _issue(authority, MX, tmp_path), _issue(authority, "other.test", tmp_path))


@pytest.fixture
def dns() -> Iterator[LoopbackDns]:
    records = {("tls.test", "MX"): [f"10 {MX}."], (MX, "A"): ["127.0.0.1"]}
    with LoopbackDns(records) as server:
        yield server


async def deliver(
    dns: LoopbackDns, sink: RecordingSink, delivery: dict[str, Any] | None = None, **egress: Any
) -> SmtpAttempt:
    """One message to rcpt@tls.test through the worker's route (its TLS policy resolved as for a task)."""
    config = parse_config(
        {
            "ingest": {"message_id_domain": "w.test"},
            "delivery": {
                "ehlo_domain": "w.test",
                "smtp_port": sink.address[1],
                "nameservers": [dns.address],
                "connect_timeout": "3s",
                "outbound": {"allow": [sink.hostport]},
                **(delivery or {}),
            },
            "egress": {"sources": [{"name": "s"}], "pools": [{"name": "p", "entries": [{"name": "s"}]}], **egress},
            "queues": {"egress_pool": "p"},
        },
        env={},
    )
    worker = DeliveryWorker(config, system_clock)
    source = config.egress.source("s")
    path = worker.dispatcher(source, worker.route(source, "tls.test"))
    attempt = await path.deliver("from@w.test", "rcpt@tls.test", b"Subject: tls\r\n\r\nhi\r\n", 30.0)
    await path.close()
    assert attempt is not None
    return attempt


def _code(attempt: SmtpAttempt) -> tuple[int, str | None]:
    return attempt.response.code, attempt.response.enhanced_code


async def test_required_delivers_over_a_certificate_verified_against_the_mx_name(
    dns: LoopbackDns, ca: Authority
) -> None:
    with RecordingSink(tls=ca.issued) as sink:
        attempt = await deliver(dns, sink, {"starttls": "required", "tls_ca_file": str(ca.ca_file)})
    assert (_code(attempt), attempt.tls) == ((250, "2.0.0"), "TLS")
    assert [m.tls for m in sink.messages] == [True]


@pytest.mark.parametrize("trust", ["the system's CAs", "the right CA, a certificate for another name", "self-signed"])
async def test_required_sends_nothing_when_the_certificate_does_not_verify(
    dns: LoopbackDns, ca: Authority, tmp_path: Path, trust: str
) -> None:
    delivery: dict[str, Any] = {"starttls": "required"}
    tls = ca.issued
    if trust.startswith("the right CA"):
        delivery["tls_ca_file"], tls = str(ca.ca_file), ca.wrong_name
    elif trust == "self-signed":
        delivery["tls_ca_file"], tls = str(ca.ca_file), self_signed(tmp_path, MX)
    with RecordingSink(tls=tls) as sink:
        attempt = await deliver(dns, sink, delivery)
    assert _code(attempt) == (451, "4.7.5")
    assert f"certificate of {MX} not verified" in attempt.response.content
    assert "nothing sent" in attempt.response.content
    assert sink.messages == []
    assert len(sink.connections) == 1  # no second try in the clear


async def test_required_sends_nothing_to_a_server_without_starttls(dns: LoopbackDns) -> None:
    with RecordingSink() as sink:
        attempt = await deliver(dns, sink, {"starttls": "required"})
    assert _code(attempt) == (451, "4.7.5")
    assert sink.messages == []


async def test_opportunistic_takes_any_certificate_and_plaintext_when_not_offered(
    dns: LoopbackDns, tmp_path: Path
) -> None:
    with RecordingSink(tls=self_signed(tmp_path, "unrelated.test")) as sink:
        secured = await deliver(dns, sink)
    with RecordingSink() as plain_sink:
        plain = await deliver(dns, plain_sink)
    assert (_code(secured), secured.tls) == ((250, "2.0.0"), "TLS")
    assert (_code(plain), plain.tls) == ((250, "2.0.0"), None)
    assert [m.tls for m in sink.messages + plain_sink.messages] == [True, False]


async def test_opportunistic_tries_again_in_plaintext_on_a_new_connection_when_the_handshake_fails(
    dns: LoopbackDns, ca: Authority
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*ca.issued)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("PSK-AES128-CBC-SHA256")  # no suite the client offers: the handshake fails
    with RecordingSink(tls_context=context) as sink:
        attempt = await deliver(dns, sink)
        required = await deliver(dns, sink, {"starttls": "required", "tls_ca_file": str(ca.ca_file)})
    assert (_code(attempt), attempt.tls) == ((250, "2.0.0"), None)
    assert [m.tls for m in sink.messages] == [False]  # only the opportunistic message, in the clear
    assert _code(required) == (451, "4.4.1")  # required: the failed handshake ends the attempt
    assert len(sink.connections) == 3


async def test_disabled_never_starts_tls(dns: LoopbackDns, ca: Authority) -> None:
    with RecordingSink(tls=ca.issued) as sink:
        attempt = await deliver(dns, sink, {"starttls": "disabled"})
    assert (_code(attempt), attempt.tls) == ((250, "2.0.0"), None)
    assert [m.tls for m in sink.messages] == [False]


@pytest.mark.parametrize(
    ("egress", "expected"),
    [
        ({"paths": [{"domain": "tls.test", "starttls": "required"}]}, (451, "4.7.5")),
        ({"sources": [{"name": "s", "starttls": "required"}]}, (451, "4.7.5")),
        (  # the source's rule comes before the destination's, and both before the source's own setting
            {
                "sources": [{"name": "s", "starttls": "required"}],
                "paths": [
                    {"domain": "tls.test", "starttls": "required"},
                    {"domain": "tls.test", "source": "s", "starttls": "opportunistic"},
                ],
            },
            (250, "2.0.0"),
        ),
        ({"paths": [{"domain": "other.test", "starttls": "required"}]}, (250, "2.0.0")),
    ],
)
async def test_the_policy_comes_from_path_rules_then_the_source(
    dns: LoopbackDns, tmp_path: Path, egress: dict[str, Any], expected: tuple[int, str]
) -> None:
    """An unverifiable certificate: delivered where the path is opportunistic, deferred where it is required."""
    with RecordingSink(tls=self_signed(tmp_path, MX)) as sink:
        attempt = await deliver(dns, sink, **egress)
    assert _code(attempt) == expected
