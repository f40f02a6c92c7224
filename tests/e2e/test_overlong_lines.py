"""A line over RFC 5322's 998 octets is refused at every door of the running stack, naming the line, rather than
accepted and bounced by the next server ("500 Line too long"); a line of exactly 998 octets is delivered to the
real sink as it was sent. Over HTTP (inject's raw content, a Koukan body) and over SMTP (the gateway's DATA)."""

from __future__ import annotations

import smtplib
import time
import uuid

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.e2e.test_koukan_api import CREATE, envelope, until_final
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, GatewayPorts
from tests.infra.stack import ACME_KEY, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
EDGE, PAST = "e" * 998, "p" * 999


def _message(tag: str, line: str, end: str = "\r\n") -> str:
    return end.join(["From: app@acme.test", f"To: {tag}", f"Subject: lines {tag}", "", "first", line, ""])


def _delivered(sink: CaptureSink, rcpt: str, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in sink.messages if rcpt in m.rcpt_tos]
        if found:
            return bytes(found[0].data)
        time.sleep(0.1)
    raise AssertionError(f"nothing delivered to {rcpt}")


def test_inject_refuses_raw_content_with_a_long_line_and_delivers_998_octets(stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    edge, past = f"edge-{tag}@example.com", f"past-{tag}@example.com"
    with stack.client(ACME_KEY) as client:
        refused = client.post(
            "/api/inject/v1",
            json={"envelope_sender": "app@acme.test", "recipients": [{"email": past}], "content": _message(tag, PAST)},
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        [error] = refused.json()["errors"]
        assert error["field"] == "content"
        assert "content line 6 is 999 octets long; RFC 5322 allows at most 998" in error["message"]
        accepted = client.post(
            "/api/inject/v1",
            json={"envelope_sender": "app@acme.test", "recipients": [{"email": edge}], "content": _message(tag, EDGE)},
        )
        assert accepted.status_code == 200, accepted.text
    [tx] = accepted.json()["transactions"]
    assert stack.wait_status(tx["id"], {"delivered"})["status"] == "delivered"
    assert f"\r\n{EDGE}\r\n".encode() in _delivered(sink, edge)
    assert not [m for m in sink.messages if past in m.rcpt_tos]


def test_the_gateway_refuses_data_with_a_long_line_at_its_end(
    stack: Stack, gateway: GatewayPorts, sink: CaptureSink
) -> None:
    tag = uuid.uuid4().hex[:8]
    edge, past = f"smtp-edge-{tag}@example.com", f"smtp-past-{tag}@example.com"
    with smtplib.SMTP("127.0.0.1", gateway.submission_plain, timeout=60) as smtp:
        smtp.login(ACME_USER, ACME_PASSWORD)
        smtp.mail("app@acme.test")
        smtp.rcpt(past)
        refused = smtp.data(_message(tag, PAST).encode())  # answered at the end of the data
        assert refused == (500, b"5.5.2 Line too long (see RFC5321 4.5.3.1.6)")
        smtp.mail("app@acme.test")  # the session goes on
        smtp.rcpt(edge)
        code, _ = smtp.data(_message(tag, EDGE).encode())
        assert code == 250
    assert f"\r\n{EDGE}\r\n".encode() in _delivered(sink, edge)
    assert not [m for m in sink.messages if past in m.rcpt_tos]


def test_a_koukan_body_with_a_long_line_is_refused_as_its_data_response(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    rcpt = f"koukan-past-{tag}@example.com"
    with stack.client(ACME_KEY) as client:
        created = client.post(CREATE, json=envelope(rcpt))
        assert created.status_code == 201, created.text
        uri = created.json()["body"]["blob_status"]["uri"]
        put = client.put(uri, content=_message(tag, PAST, end="\n").encode())  # LF ends, as a file on disk
        assert put.status_code == 200, put.text
        body, _ = until_final(client, created.headers["location"])
    assert body["final_attempt_reason"] == "upstream response permfail"
    assert body["data_response"]["code"] == 554
    assert body["data_response"]["message"].startswith("5.6.0 body line 6 is 999 octets long; RFC 5322 allows")
