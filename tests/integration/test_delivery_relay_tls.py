"""A relay with credentials gets them only over TLS with a verified certificate (the system's CAs, or the
relay's `ca_file`): a relay that does not offer STARTTLS (stripped on the way, say) or whose certificate
does not verify never sees an AUTH line, and the attempt defers. A relay without credentials keeps
opportunistic TLS. Real aiosmtpd relays on loopback, certificates from a trustme CA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from mailstream.config.model import parse_config
from mailstream.core.clock import system_clock
from mailstream.delivery.routes import route_for
from mailstream.delivery.worker import DeliveryWorker
from tests.infra.smtp_recorder import RecordingSink, self_signed

pytestmark = pytest.mark.integration
LOGINS = {"alice": "alice-secret"}


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, tuple[Path, Path]]:
    """(the CA's PEM, (certificate, key) it issued for 127.0.0.1)."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "relay.crt", tmp_path / "relay.key"
    authority.cert_pem.write_to_path(str(ca_file))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return ca_file, (cert, key)


async def send(relay: RecordingSink, **settings: Any) -> tuple[int, str | None, str, str | None]:
    """One message through a source whose relay is `relay` with `settings`: (code, enhanced, text, tls)."""
    config = parse_config(
        {
            "ingest": {"message_id_domain": "w.test"},
            "delivery": {
                "ehlo_domain": "w.test",
                "connect_timeout": "3s",
                "outbound": {"allow": [relay.hostport]},
            },
            "egress": {
                "sources": [{"name": "s", "relay": {"host": relay.address[0], "port": relay.address[1]} | settings}],
                "pools": [{"name": "p", "entries": [{"name": "s"}]}],
            },
            "queues": {"egress_pool": "p"},
        },
        env={},
    )
    worker = DeliveryWorker(config, system_clock)
    source = config.egress.source("s")
    path = worker.dispatcher(source, route_for(source, config.delivery, "example.com"))
    attempt = await path.deliver("from@w.test", "rcpt@example.com", b"Subject: relay\r\n\r\nhi\r\n", 30.0)
    await path.close()
    assert attempt is not None
    r = attempt.response
    return r.code, r.enhanced_code, r.content, attempt.tls


def auth_lines(relay: RecordingSink) -> list[str]:
    return [line for c in relay.connections for line in c.auth_lines]


async def test_a_verified_relay_gets_the_credentials_and_the_mail(ca: tuple[Path, tuple[Path, Path]]) -> None:
    ca_file, tls = ca
    with RecordingSink(tls=tls, logins=LOGINS) as relay:
        code, _, _, negotiated = await send(relay, username="alice", password="alice-secret", ca_file=str(ca_file))
    assert (code, negotiated) == (250, "TLS")
    assert [(m.tls, m.login) for m in relay.messages] == [(True, "alice")]
    assert len(auth_lines(relay)) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # that is the point
async def test_a_relay_without_starttls_never_sees_the_credentials() -> None:
    with RecordingSink(logins=LOGINS) as relay:  # offers AUTH in the clear, as after a stripped STARTTLS
        code, enhanced, text, _ = await send(relay, username="alice", password="alice-secret")
    assert (code, enhanced) == (451, "4.7.10")
    assert "verified TLS" in text
    assert len(relay.connections) == 1  # it was reached, and
    assert auth_lines(relay) == []  # no AUTH line ever arrived
    assert relay.messages == []


@pytest.mark.parametrize("trusted", ["another CA", "the system's CAs"])
async def test_a_relay_whose_certificate_does_not_verify_never_sees_the_credentials(
    ca: tuple[Path, tuple[Path, Path]], tmp_path: Path, trusted: str
) -> None:
    _, tls = ca
    settings: dict[str, Any] = {"username": "alice", "password": "alice-secret"}
    if trusted == "another CA":
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        settings["ca_file"] = str(other)
    with RecordingSink(tls=tls, logins=LOGINS) as relay:
        code, enhanced, text, _ = await send(relay, **settings)
    assert (code, enhanced) == (451, "4.7.5")
    assert "not verified" in text
    assert "credentials not sent" in text
    assert auth_lines(relay) == []
    assert relay.messages == []


async def test_a_relay_without_credentials_keeps_opportunistic_tls(tmp_path: Path) -> None:
    with RecordingSink(tls=self_signed(tmp_path)) as relay:  # an unverifiable certificate is still used
        code, _, _, negotiated = await send(relay)
    assert (code, negotiated) == (250, "TLS")
    assert [m.tls for m in relay.messages] == [True]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # aiosmtpd: STARTTLS only
async def test_implicit_tls_verifies_before_the_greeting_and_then_authenticates(
    ca: tuple[Path, tuple[Path, Path]],
) -> None:
    ca_file, tls = ca
    with RecordingSink(tls=tls, logins=LOGINS, implicit_tls=True) as relay:
        login = {"username": "alice", "password": "alice-secret", "tls": "implicit"}
        code, _, _, negotiated = await send(relay, ca_file=str(ca_file), **login)
        refused, enhanced, text, _ = await send(relay, **login)  # the system's CAs do not know the test CA
    assert (code, negotiated) == (250, "TLS")
    assert [m.login for m in relay.messages] == ["alice"]
    assert (refused, enhanced) == (451, "4.7.5")
    assert "credentials not sent" in text
    assert len(auth_lines(relay)) == 1  # the verified session's only


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # aiosmtpd: STARTTLS only
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_a_relay_named_by_host_is_verified_against_the_name_at_the_checked_address(
    tmp_path: Path, mode: str
) -> None:
    """The name is resolved and each address checked by the outbound policy; the connection goes to that
    address, and the certificate (issued for the name only) is verified against the name."""
    authority = trustme.CA()
    issued = authority.issue_cert("localhost")
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "relay.crt", tmp_path / "relay.key"
    authority.cert_pem.write_to_path(str(ca_file))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    with RecordingSink(tls=(cert, key), logins=LOGINS, implicit_tls=mode == "implicit") as relay:
        settings = {"host": "localhost", "username": "alice", "password": "alice-secret", "ca_file": str(ca_file)}
        code, _, _, negotiated = await send(relay, tls=mode, **settings)
    assert (code, negotiated) == (250, "TLS")
    assert [m.login for m in relay.messages] == ["alice"]
