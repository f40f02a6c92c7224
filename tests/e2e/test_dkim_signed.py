"""What leaves mailstream is DKIM-signed, whichever door it came in by, and verifies at the receiver
against the public keys in DNS."""

from __future__ import annotations

import smtplib
import time
import uuid

import dkim
import pytest

from mailstream.devtools.capture_sink import Captured, CaptureSink
from tests.infra.dkim_keys import dns_lookup
from tests.infra.dns_server import LoopbackDns
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, GatewayPorts
from tests.infra.stack import ACME_KEY, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _arrived(sink: CaptureSink, rcpt: str) -> Captured:
    deadline = time.monotonic() + 60
    while not (found := [m for m in sink.messages if rcpt in m.rcpt_tos]):
        assert time.monotonic() < deadline, f"nothing reached {rcpt}"
        time.sleep(0.1)
    return found[0]


def _signatures_verify(data: bytes, dns: LoopbackDns) -> list[bytes]:
    """Every DKIM-Signature verified one by one (dkimpy checks the topmost); their algorithms."""
    lookup, algorithms = dns_lookup(dns.address), []
    while data.startswith(b"DKIM-Signature:"):
        assert dkim.verify(data, dnsfunc=lookup), data[:600]
        algorithms.append(data.split(b"a=", 1)[1].split(b";", 1)[0])
        data = data[data.index(b"\r\n", data.index(b"b=")) + 2 :]
        while data[:1] in (b" ", b"\t"):  # the rest of the folded field
            data = data[data.index(b"\r\n") + 2 :]
    return algorithms


def test_mail_submitted_over_smtp_is_signed_with_both_keys(
    stack: Stack, gateway: GatewayPorts, sink: CaptureSink, dkim_dns: LoopbackDns
) -> None:
    rcpt = f"dkim-smtp-{uuid.uuid4().hex[:8]}@example.com"
    with smtplib.SMTP("127.0.0.1", gateway.submission_plain, timeout=60) as smtp:
        smtp.login(ACME_USER, ACME_PASSWORD)
        smtp.sendmail(
            "app@acme.test",
            [rcpt],
            b"From: App <app@acme.test>\r\nTo: <"
            + rcpt.encode()
            + b">\r\nSubject: signed\r\n\r\nSigned over SMTP.\r\n",
        )
    received = _arrived(sink, rcpt)
    assert sorted(_signatures_verify(received.data, dkim_dns)) == [b"ed25519-sha256", b"rsa-sha256"]
    tampered = received.data.replace(b"Subject: signed", b"Subject: changed")
    assert not dkim.verify(tampered, dnsfunc=dns_lookup(dkim_dns.address))


def test_mail_injected_over_http_is_signed(stack: Stack, sink: CaptureSink, dkim_dns: LoopbackDns) -> None:
    rcpt = f"dkim-http-{uuid.uuid4().hex[:8]}@example.com"
    with stack.client(ACME_KEY) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "bounces@acme.test",
                "recipients": [{"email": rcpt}],
                "content": {"from": {"email": "news@acme.test"}, "subject": "signed", "text_body": "Signed over HTTP."},
            },
        )
    assert r.status_code == 200, r.text
    assert len(_signatures_verify(_arrived(sink, rcpt).data, dkim_dns)) == 2
