"""Mail handed over SMTP goes through the same pipeline as the HTTP API's: gateway -> Kafka -> scheduler ->
delivery -> the sink, the status readable through the transaction API, and cut-through telling the client."""

from __future__ import annotations

import re
import smtplib
import time
import uuid

import httpx
import pytest

from mailstream.devtools.capture_sink import CaptureSink
from mailstream.events.records import AcceptedMessage
from mailstream.events.serde import decode
from mailstream.events.topics import ACCEPTED
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, INGRESS_DOMAIN, GatewayPorts, delivery_status
from tests.infra.stack import Stack
from tests.infra.topics import read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _message(subject: str) -> bytes:
    return f"From: app@acme.test\r\nTo: someone\r\nSubject: {subject}\r\n\r\nHello over SMTP.\r\n".encode()


def _transaction_id(reply: bytes) -> str:
    found = re.search(rb" as ([0-9a-f]{32})", reply)
    assert found is not None, reply
    return found[1].decode()


def test_submission_over_starttls_is_delivered_and_reported_by_cut_through(
    stack: Stack, gateway: GatewayPorts, sink: CaptureSink
) -> None:
    rcpt = f"smtp-{uuid.uuid4().hex[:8]}@example.com"
    subject = f"gateway {uuid.uuid4().hex[:8]}"
    with smtplib.SMTP("127.0.0.1", gateway.submission, timeout=60) as smtp:
        smtp.starttls(context=gateway.client_context())
        smtp.login(ACME_USER, ACME_PASSWORD)
        smtp.mail("app@acme.test")
        smtp.rcpt(rcpt)
        code, reply = smtp.data(_message(subject))
    assert code == 250
    assert reply.startswith(b"2.0.0 delivered as ")  # the first attempt came back within the cut-through wait
    status = stack.wait_status(_transaction_id(reply), {"delivered"})
    assert (status["tenant"], status["sender"], status["recipient"]) == ("acme", "app@acme.test", rcpt)
    [received] = [m for m in sink.messages if rcpt in m.rcpt_tos]
    message = received.message()
    assert message["Subject"] == subject
    assert "gateway.mailstream.test" in message["Received"]


def test_a_permanent_failure_every_recipient_got_is_the_data_reply(stack: Stack, gateway: GatewayPorts) -> None:
    rcpt = f"bounce-{uuid.uuid4().hex[:8]}@example.com"  # the sink answers 550 5.1.1
    with smtplib.SMTP("127.0.0.1", gateway.submission_plain, timeout=60) as smtp:
        smtp.login(ACME_USER, ACME_PASSWORD)
        smtp.mail("app@acme.test")
        smtp.rcpt(rcpt)
        code, reply = smtp.data(_message("will bounce"))
    assert (code, reply) == (550, b"5.1.1 mailbox unknown")


def test_ingress_passes_a_temporary_failure_back_and_stops_retrying(stack: Stack, gateway: GatewayPorts) -> None:
    rcpt = f"defer-{uuid.uuid4().hex[:8]}@{INGRESS_DOMAIN}"  # the sink answers 451 4.3.0
    with smtplib.SMTP("127.0.0.1", gateway.ingress, timeout=60) as smtp:
        smtp.ehlo("peer.remote.example")
        smtp.mail("peer@remote.example")
        smtp.rcpt(rcpt)
        code, reply = smtp.data(_message("deferred"))
    assert (code, reply) == (451, b"4.3.0 try again later")
    accepted = [
        decode(value, AcceptedMessage)
        for _, _, _, value in read_all(stack.bootstrap, ACCEPTED.name, ACCEPTED.partitions)
        if value
    ]
    [tx] = [m.id for m in accepted if m.recipient == rcpt]
    status = stack.wait_status(tx, {"cancelled"})  # the peer retries it, so mailstream must not
    assert status["done"] is True


def test_a_later_bounce_sends_the_sender_a_delivery_status_notification(
    stack: Stack, gateway: GatewayPorts, sink: CaptureSink
) -> None:
    tag = uuid.uuid4().hex[:8]
    sender = f"dsn-{tag}@acme.test"
    good, bad = f"ok-{tag}@example.com", f"bounce-{tag}@example.com"
    with smtplib.SMTP("127.0.0.1", gateway.submission_plain, timeout=60) as smtp:
        smtp.login(ACME_USER, ACME_PASSWORD)
        smtp.mail(sender, ["RET=HDRS", "ENVID=env-" + tag])
        smtp.rcpt(good, ["NOTIFY=FAILURE"])
        smtp.rcpt(bad, ["NOTIFY=FAILURE", f"ORCPT=rfc822;{bad}"])
        code, reply = smtp.data(_message("half of it bounces"))
    assert code == 250
    assert reply.startswith(b"2.0.0 queued as ")  # one delivered, one refused: stored and forwarded
    deadline = time.monotonic() + 60
    while not (found := [m for m in sink.messages if m.rcpt_tos == (sender,)]):
        assert time.monotonic() < deadline, "no DSN reached the sender"
        time.sleep(0.2)
    [dsn] = found
    assert dsn.mail_from in ("", "<>")  # from the null sender: a DSN never causes another
    per_message, per_recipient = delivery_status(dsn.message())
    assert per_message["Original-Envelope-Id"] == f"env-{tag}"
    assert per_recipient["Final-Recipient"] == f"rfc822; {bad}"
    assert per_recipient["Status"] == "5.1.1"
    assert not [m for m in sink.messages if m.rcpt_tos == (sender,) and good in m.data.decode(errors="replace")]


def test_the_gateway_reports_health_and_metrics(stack: Stack, gateway: GatewayPorts) -> None:
    with smtplib.SMTP("127.0.0.1", gateway.ingress, timeout=30) as smtp:
        smtp.ehlo("metrics.test")
        assert smtp.mail("<>")[0] == 250
        assert smtp.rcpt("nobody@elsewhere.example")[0] == 550
    base = f"http://127.0.0.1:{stack.config['gateway']['web_port']}"
    assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    for name in (
        'mailstream_gateway_sessions_total{listener="ingress",outcome="opened"}',
        'mailstream_gateway_replies_total{code="550",listener="ingress"}',
        'mailstream_gateway_commands_total{command="RCPT",listener="ingress"}',
        "mailstream_gateway_cut_through_total",
        "mailstream_gateway_tls_handshakes_total",
        "mailstream_gateway_auth_failures_total",
    ):
        assert name in metrics, name
