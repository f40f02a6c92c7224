"""MTA-STS (RFC 8461) through the worker's connections: the `_mta-sts` TXT record served by the loopback DNS
server, the policy by a loopback HTTPS server (a trustme certificate for `mta-sts.<domain>`), the MX host an
aiosmtpd sink with a certificate for its MX name. `enforce` delivers only to MX hosts the policy names, over
verified TLS; `testing` delivers and counts; a policy that cannot be fetched leaves the cached one in force,
or, with none cached, delivery goes on as if there were no policy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from prometheus_client import REGISTRY

from mailstream.config.model import parse_config
from mailstream.delivery.smtp_client import SmtpAttempt
from mailstream.delivery.worker import DeliveryWorker
from tests.infra.dns_server import LoopbackDns
from tests.infra.https_policy import PolicyServer
from tests.infra.smtp_recorder import RecordingSink, self_signed

pytestmark = pytest.mark.integration
DOMAIN, MX = "sts.test", "mx1.sts.test"


def policy(mode: str, mx: str = "*.sts.test", max_age: int = 3600) -> bytes:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: {max_age}\r\n".encode()


@dataclass
class Setup:
    dns: LoopbackDns
    https: PolicyServer
    ca_file: Path
    mx_cert: tuple[Path, Path]


def _issue(authority: trustme.CA, name: str, folder: Path) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    issued = authority.issue_cert(name)
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    authority = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    records = {
        (DOMAIN, "MX"): [f"10 {MX}."],
        (MX, "A"): ["127.0.0.1"],
        (f"_mta-sts.{DOMAIN}", "TXT"): ['"v=STSv1; id=first;"'],
        (f"mta-sts.{DOMAIN}", "A"): ["127.0.0.1"],
    }
    with (
        LoopbackDns(records, ttl=0) as dns,
        PolicyServer(_issue(authority, f"mta-sts.{DOMAIN}", tmp_path)) as https,
    ):
        yield Setup(dns, https, ca_file, _issue(authority, MX, tmp_path))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def worker_for(setup: Setup, sink: RecordingSink, clock: Clock, allow_policy: bool = True) -> DeliveryWorker:
    allow = [sink.hostport] + ([f"127.0.0.1:{setup.https.port}"] if allow_policy else [])
    delivery: dict[str, Any] = {
        "ehlo_domain": "w.test",
        "smtp_port": sink.address[1],
        "nameservers": [setup.dns.address],
        "connect_timeout": "3s",
        "outbound": {"allow": allow},
        "tls_ca_file": str(setup.ca_file),
        "mta_sts": {"enabled": True, "https_port": setup.https.port, "fetch_timeout": "3s"},
    }
    config = parse_config({"ingest": {"message_id_domain": "w.test"}, "delivery": delivery}, env={})
    return DeliveryWorker(config, clock)


async def deliver(worker: DeliveryWorker) -> SmtpAttempt:
    source = worker._config.egress.source("unspecified")
    path = worker.dispatcher(source, worker.route(source, DOMAIN))
    attempt = await path.deliver("from@w.test", f"rcpt@{DOMAIN}", b"Subject: sts\r\n\r\nhi\r\n", 30.0)
    await path.close()
    assert attempt is not None
    return attempt


def _code(attempt: SmtpAttempt) -> tuple[int, str | None]:
    return attempt.response.code, attempt.response.enhanced_code


def violations(mode: str) -> float:
    return REGISTRY.get_sample_value("mailstream_delivery_mta_sts_violations_total", {"mode": mode}) or 0.0


async def test_enforce_delivers_to_a_named_mx_over_verified_tls(setup: Setup) -> None:
    setup.https.body = policy("enforce")
    with RecordingSink(tls=setup.mx_cert) as sink:
        attempt = await deliver(worker_for(setup, sink, Clock()))
    assert (_code(attempt), attempt.tls) == ((250, "2.0.0"), "TLS")
    assert [m.tls for m in sink.messages] == [True]
    assert setup.https.hosts == [f"mta-sts.{DOMAIN}:{setup.https.port}"]


async def test_enforce_refuses_an_mx_certificate_that_does_not_verify(setup: Setup, tmp_path: Path) -> None:
    setup.https.body = policy("enforce")
    with RecordingSink(tls=self_signed(tmp_path, MX)) as sink:  # opportunistic TLS alone would deliver
        attempt = await deliver(worker_for(setup, sink, Clock()))
    assert _code(attempt) == (451, "4.7.5")
    assert sink.messages == []


async def test_enforce_never_connects_to_an_mx_the_policy_does_not_name(setup: Setup) -> None:
    setup.https.body = policy("enforce", mx="mail.elsewhere.test")
    before = violations("enforce")
    with RecordingSink(tls=setup.mx_cert) as sink:
        attempt = await deliver(worker_for(setup, sink, Clock()))
    assert _code(attempt) == (451, "4.7.5")
    assert f"no MX host of {DOMAIN} ({MX}) is named by its MTA-STS policy" in attempt.response.content
    assert sink.connections == []
    assert violations("enforce") == before + 1


async def test_testing_counts_the_violation_and_delivers(setup: Setup) -> None:
    setup.https.body = policy("testing", mx="mail.elsewhere.test")
    before = violations("testing")
    with RecordingSink() as sink:  # not even STARTTLS
        attempt = await deliver(worker_for(setup, sink, Clock()))
    assert _code(attempt) == (250, "2.0.0")
    assert violations("testing") == before + 1


@pytest.mark.parametrize("failure", ["404", "not text/plain", "unparsable", "denied by delivery.outbound"])
async def test_without_a_cached_policy_a_failed_fetch_means_no_policy(setup: Setup, failure: str) -> None:
    setup.https.body = policy("enforce", mx="mail.elsewhere.test")  # would refuse, were it read
    if failure == "404":
        setup.https.status = 404
    elif failure == "not text/plain":
        setup.https.content_type = "text/html"
    elif failure == "unparsable":
        setup.https.body = b"version: STSv1\r\nmode: sometimes\r\n"
    with RecordingSink() as sink:
        worker = worker_for(setup, sink, Clock(), allow_policy=failure != "denied by delivery.outbound")
        attempt = await deliver(worker)
    assert _code(attempt) == (250, "2.0.0")
    if failure == "denied by delivery.outbound":
        assert setup.https.hosts == []  # never asked


async def test_a_cached_policy_is_kept_until_max_age_and_through_failed_fetches(setup: Setup) -> None:
    clock = Clock()
    setup.https.body = policy("enforce", mx="mail.elsewhere.test", max_age=600)
    with RecordingSink() as sink:
        worker = worker_for(setup, sink, clock)
        assert _code(await deliver(worker)) == (451, "4.7.5")
        setup.https.body = policy("none")  # published, but the TXT id is the same: the cache is used
        assert _code(await deliver(worker)) == (451, "4.7.5")
        assert len(setup.https.hosts) == 1
        setup.dns.set(f"_mta-sts.{DOMAIN}", "TXT", ['"v=STSv1; id=second;"'])
        setup.https.status = 500  # a new id, and its fetch fails: the cached policy stays in force
        assert _code(await deliver(worker)) == (451, "4.7.5")
        assert len(setup.https.hosts) == 2
        clock.now += timedelta(seconds=601)  # expired, and still no policy to be had: as if none
        assert _code(await deliver(worker)) == (250, "2.0.0")
        setup.https.status = 200  # a new id fetched replaces the cached policy
        setup.https.body = policy("none")
        setup.dns.set(f"_mta-sts.{DOMAIN}", "TXT", ['"v=STSv1; id=third;"'])
        assert _code(await deliver(worker)) == (250, "2.0.0")
    assert len(sink.messages) == 2


async def test_a_policy_server_whose_certificate_does_not_verify_is_no_policy(setup: Setup, tmp_path: Path) -> None:
    with PolicyServer(self_signed(tmp_path, f"mta-sts.{DOMAIN}")) as untrusted, RecordingSink() as sink:
        untrusted.body = policy("enforce", mx="mail.elsewhere.test")
        setup.https = untrusted
        attempt = await deliver(worker_for(setup, sink, Clock()))
    assert _code(attempt) == (250, "2.0.0")  # the policy was never read: its TLS did not verify
    assert untrusted.hosts == []
