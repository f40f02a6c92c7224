"""A remote server's reply that is not UTF-8 is recorded with replacement characters: the response still
encodes to Avro, so the worker answers the attempt instead of failing after the message was delivered.

A real SMTP server on loopback (`tests.infra.tarpit`, without delay) ends the message with the bad bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mailstream.delivery.smtp_client import Destination, SessionSettings, SmtpSession
from mailstream.events.records import DeliveryResponse
from mailstream.events.topics import RESPONSES
from tests.infra.tarpit import Tarpit

SETTINGS = SessionSettings(
    ehlo_domain="worker.test",
    source_address=None,
    starttls="disabled",
    login=None,
    connect_timeout=5.0,
    command_timeout=5.0,
)


async def test_a_reply_that_is_not_utf8_is_recorded_with_replacements_and_encodes() -> None:
    with Tarpit(0.0, final_reply=b"250 2.0.0 queued as \xff\xfe42 caf\xc3\xa9") as server:
        session = await SmtpSession.open([Destination(server.host, server.port)], SETTINGS)
        assert isinstance(session, SmtpSession)
        attempt = await session.send("bounce@worker.test", "rcpt@example.com", b"Subject: t\r\n\r\nhi\r\n")
        await session.close()
    assert len(server.messages) == 1
    assert (attempt.response.code, attempt.response.enhanced_code) == (250, "2.0.0")
    assert attempt.response.content == "queued as \ufffd\ufffd42 caf\u00e9"  # valid UTF-8 kept as it was
    now = datetime.now(UTC)
    answer = DeliveryResponse(
        id="t",
        attempt=1,
        attempt_id="t/1",
        queue="example.com",
        outcome="DELIVERED",
        response=attempt.response,
        egress_source="s",
        egress_path="s->site",
        peer_address=attempt.peer_address,
        started_at=now,
        completed_at=now,
    )
    decoded = RESPONSES.decode(RESPONSES.encode(answer))
    assert isinstance(decoded, DeliveryResponse)
    assert decoded.response == attempt.response
