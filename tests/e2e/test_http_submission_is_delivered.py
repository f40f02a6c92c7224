"""POST /api/inject/v1 → a real SMTP sink receives each recipient's message → status says delivered."""

from __future__ import annotations

import time
import uuid

import pytest

from mailstream.devtools.capture_sink import Captured, CaptureSink
from tests.infra.stack import ACME_KEY, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _wait_captured(sink: CaptureSink, recipient: str, timeout: float = 30.0) -> list[Captured]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in sink.messages if recipient in m.rcpt_tos]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing captured for {recipient}")


def test_builder_message_reaches_the_sink_and_is_delivered(stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    ann, bob = f"ann-{tag}@example.com", f"bob-{tag}@example.net"
    request = {
        "envelope_sender": f"bounces-{tag}@acme.test",
        "recipients": [
            {"email": ann, "name": "Ann Example", "substitutions": {"code": "A1"}},
            {"email": bob, "substitutions": {"code": "B2"}, "metadata": {"job": 7}},
        ],
        "substitutions": {"brand": "Acme"},
        "metadata": {"campaign": "spring"},
        "content": {
            "from": {"email": "news@acme.test", "name": "Acme News"},
            "subject": "Hello {{ name or email }} from {{ brand }}",
            "text_body": "Your code is {{ code }}.",
            "html_body": "<p>Your code is <b>{{ code }}</b>.</p>",
            "headers": {"X-Campaign": "spring-{{ code }}"},
        },
    }
    with stack.client(ACME_KEY) as client:
        r = client.post("/api/inject/v1", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success_count"] == 2
    assert body["fail_count"] == 0
    assert body["failed_recipients"] == []
    assert body["errors"] == []
    by_rcpt = {t["recipient"]: t for t in body["transactions"]}
    assert by_rcpt[ann]["queue"] == "spring:acme@example.com"
    assert by_rcpt[bob]["queue"] == "spring:acme@example.net"

    got = _wait_captured(sink, ann)
    assert len(got) == 1
    captured = got[0]
    assert captured.mail_from == f"bounces-{tag}@acme.test"
    assert captured.rcpt_tos == (ann,)
    msg = captured.message()
    assert msg["Subject"] == "Hello Ann Example from Acme"
    assert msg["From"] == "Acme News <news@acme.test>"
    assert msg["To"] == f"Ann Example <{ann}>"
    assert msg["X-Campaign"] == "spring-A1"
    assert msg["Message-ID"].endswith("@mailstream.test>")
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None
    assert text.get_content().strip() == "Your code is A1."
    assert html is not None
    assert "<b>A1</b>" in html.get_content()

    bob_msg = _wait_captured(sink, bob)[0].message()
    assert bob_msg["Subject"] == f"Hello {bob} from Acme"
    assert bob_msg["To"] == bob

    status = stack.wait_status(by_rcpt[ann]["id"], {"delivered", "bounced", "deferred"}, key=ACME_KEY)
    assert status["status"] == "delivered"
    assert status["done"] is True
    assert status["tenant"] == "acme"
    assert status["campaign"] == "spring"
    assert status["num_attempts"] == 1
    attempt = status["attempts"][0]
    assert attempt["outcome"] == "DELIVERED"
    assert attempt["response"]["code"] == 250
    assert attempt["response"]["enhanced_code"] == "2.0.0"
    assert attempt["response"]["content"].startswith("OK captured as")
    assert attempt["peer_address"] == f"{sink.address[0]}:{sink.address[1]}"
    assert status["last_response"] == attempt["response"]


def test_raw_rfc5322_content_is_sent_as_given(stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    rcpt = f"raw-{tag}@example.org"
    raw = (
        "From: App <app@acme.test>\r\nTo: someone@example.org\r\nSubject: raw {{ email }}\r\n"
        "Message-ID: <fixed-{tag}@acme.test>\r\n\r\nline one\r\n.leading dot\r\n"
    ).replace("{tag}", tag)
    with stack.client() as client:
        r = client.post(
            "/api/inject/v1", json={"envelope_sender": "app@acme.test", "recipients": [{"email": rcpt}], "content": raw}
        )
    assert r.status_code == 200, r.text
    tx = r.json()["transactions"][0]
    assert tx["queue"] == "example.org"  # admin key, no tenant or campaign: just the domain
    msg = _wait_captured(sink, rcpt)[0]
    assert msg.message()["Subject"] == f"raw {rcpt}"
    assert msg.message()["Message-ID"] == f"<fixed-{tag}@acme.test>"
    assert b"\r\n.leading dot\r\n" in msg.data  # dot-stuffing undone by the receiving side
    assert stack.wait_status(tx["id"], {"delivered"})["status"] == "delivered"
