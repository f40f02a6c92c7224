"""Bounces and complaints received by mail, on the running pipeline: a message injected with trace_headers
reaches the sink carrying its trace header; a DSN quoting it, fed to the gateway's ingress listener over SMTP,
turns the delivered transaction bounced with the remote's reason, logs a Bounce (oob) on mail.events and puts
the address on the tenant's list (the next inject to it fails); an ARF complaint flags the status, logs a
Feedback and suppresses; a report naming nothing is answered 250 and counted, and changes nothing."""

from __future__ import annotations

import smtplib
import time
import uuid
from typing import Any

import httpx
import pytest

from mailstream.core.trace_header import TraceRef, decode
from mailstream.devtools.capture_sink import Captured, CaptureSink
from mailstream.events.records import LogRecord, OutOfBandReport
from mailstream.events.serde import decode as decode_record
from mailstream.events.topics import EVENTS, QUEUE_COMMANDS
from tests.infra.gateway import BOUNCE_DOMAIN, GatewayPorts
from tests.infra.stack import ACME_KEY, Stack
from tests.infra.topics import read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def inject(stack: Stack, *recipients: str) -> dict[str, Any]:
    with stack.client(ACME_KEY) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "news@acme.test",
                "recipients": [{"email": rcpt} for rcpt in recipients],
                "content": {"subject": "December offers", "text_body": "Hello"},
                "trace_headers": {"supplemental_header": True},
            },
        )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def delivered(stack: Stack, sink: CaptureSink, rcpt: str) -> tuple[str, Captured]:
    [tx] = inject(stack, rcpt)["transactions"]
    assert stack.wait_status(tx["id"], {"delivered", "bounced"})["status"] == "delivered"
    deadline = time.monotonic() + 30
    while not (found := [m for m in sink.messages if rcpt in m.rcpt_tos]):
        assert time.monotonic() < deadline, f"nothing reached {rcpt}"
        time.sleep(0.1)
    trace = found[0].message()["X-KumoRef"]
    assert decode(str(trace)) == TraceRef(tx["id"], "acme", rcpt)  # the header reached the receiver
    return tx["id"], found[0]


def headers_of(captured: Captured) -> str:
    return captured.data.split(b"\r\n\r\n", 1)[0].decode()


def dsn(rcpt: str, returned: str) -> str:
    """A Postfix-style DSN returning the original's headers."""
    return (
        "From: MAILER-DAEMON@mx1.example.com (Mail Delivery System)\r\n"
        f"To: bounces@{BOUNCE_DOMAIN}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
        "--B1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx1.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Remote-MTA: dns; mailstore.example.com\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n\r\n"
        f"--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--B1--\r\n"
    )


def arf(rcpt: str, returned: str) -> str:
    """A Yahoo-style feedback report."""
    return (
        "From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.example>\r\n"
        f"To: fbl@{BOUNCE_DOMAIN}\r\nSubject: FW: December offers\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B2"\r\n\r\n'
        "--B2\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--B2\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"User-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 1\r\nOriginal-Rcpt-To: <{rcpt}>\r\n\r\n"
        f"--B2\r\nContent-Type: message/rfc822\r\n\r\n{returned}\r\n\r\n[redacted]\r\n--B2--\r\n"
    )


def report(gateway: GatewayPorts, text: str, sender: str = "") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", gateway.ingress, timeout=60) as smtp:
        smtp.ehlo("mx1.example.com")
        smtp.mail(sender)
        assert smtp.rcpt(f"bounces@{BOUNCE_DOMAIN}")[0] == 250
        return smtp.data(text.encode())


def events(stack: Stack, tx_id: str, kind: str, timeout: float = 30.0) -> list[LogRecord]:
    deadline = time.monotonic() + timeout
    while True:
        records = read_all(stack.bootstrap, EVENTS.name, EVENTS.partitions)
        found = [e for e in (decode_record(v, LogRecord) for _, _, _, v in records) if e.id == tx_id and e.type == kind]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def suppressed(stack: Stack, rcpt: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        with stack.client(ACME_KEY) as client:
            entries: list[dict[str, Any]] = client.get("/api/suppressions", params={"search": rcpt}).json()[
                "suppressions"
            ]
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_a_dsn_after_delivery_bounces_the_transaction_logs_it_and_suppresses(
    stack: Stack, sink: CaptureSink, gateway: GatewayPorts
) -> None:
    rcpt = f"oob-{uuid.uuid4().hex[:8]}@example.com"
    tx_id, captured = delivered(stack, sink, rcpt)
    assert report(gateway, dsn(rcpt, headers_of(captured)))[0] == 250
    status = stack.wait_status(tx_id, {"bounced"})
    assert (status["bounce_type"], status["bounce_classification"]) == ("hard", "InvalidRecipient")
    assert status["final_reason"].startswith("bounced out of band by mailstore.example.com: 550 5.1.1")
    [event] = events(stack, tx_id, "Bounce")
    assert (event.meta["oob"], event.meta["matched_by"], event.response.enhanced_code) == (
        "true",
        "trace_header",
        "5.1.1",
    )
    [entry] = suppressed(stack, rcpt)
    assert (entry["source"], entry["bounce_type"], entry["transaction_id"]) == ("bounce", "hard", tx_id)
    again = inject(stack, rcpt)
    assert again["failed_recipients"] == [rcpt]


def test_a_complaint_flags_the_delivered_transaction_logs_feedback_and_suppresses(
    stack: Stack, sink: CaptureSink, gateway: GatewayPorts
) -> None:
    rcpt = f"fbl-{uuid.uuid4().hex[:8]}@example.com"
    tx_id, captured = delivered(stack, sink, rcpt)
    assert report(gateway, arf(rcpt, headers_of(captured)), "feedback@arf.mail.yahoo.example")[0] == 250
    [event] = events(stack, tx_id, "Feedback")
    assert (event.meta["feedback_type"], event.meta["user_agent"]) == ("abuse", "Yahoo!-Mail-Feedback/2.0")
    [entry] = suppressed(stack, rcpt)
    assert (entry["source"], entry["bounce_type"], entry["reason"]) == ("complaint", "complaint", "complaint: abuse")
    with stack.client(ACME_KEY) as client:
        status = client.get(f"/api/transactions/{tx_id}").json()
    assert (status["status"], status["complaint"]) == ("delivered", "abuse")  # the delivery stands
    assert inject(stack, rcpt)["failed_recipients"] == [rcpt]


def reports_counted(port: int, kind: str, result: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    needle = f'mailstream_gateway_reports_total{{kind="{kind}",result="{result}"}} '
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(needle)), 0.0)


def test_a_report_naming_nothing_is_accepted_counted_and_changes_nothing(
    stack: Stack, gateway: GatewayPorts, gateway_config: tuple[dict[str, Any], GatewayPorts]
) -> None:
    port = gateway_config[0]["web_port"]
    before = reports_counted(port, "dsn", "unmatched")
    handed = len(read_all(stack.bootstrap, QUEUE_COMMANDS.name, QUEUE_COMMANDS.partitions))
    code, answer = report(gateway, dsn("nobody@example.com", "From: someone@elsewhere.example\r\nSubject: x"))
    assert (code, answer) == (250, b"2.0.0 report received")
    assert reports_counted(port, "dsn", "unmatched") == before + 1
    commands = read_all(stack.bootstrap, QUEUE_COMMANDS.name, QUEUE_COMMANDS.partitions)
    assert not [v for _, _, _, v in commands[handed:] if isinstance(QUEUE_COMMANDS.decode(v), OutOfBandReport)]
