"""Each message goes out with `X-Mailstream-Attempt` last in its header, so a sink counts sends per attempt."""

from __future__ import annotations

from mailstream.delivery.worker import traced


def test_the_attempt_id_is_the_last_header_field_and_the_body_is_unchanged() -> None:
    data = b"DKIM-Signature: v=1\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore\r\n"
    assert traced(data, "tx-1/2") == (
        b"DKIM-Signature: v=1\r\nSubject: hi\r\nX-Mailstream-Attempt: tx-1/2\r\n\r\nbody\r\n\r\nmore\r\n"
    )


def test_a_message_without_a_body_gets_the_field_first() -> None:
    assert traced(b"Subject: hi\r\n", "tx-1/1") == b"X-Mailstream-Attempt: tx-1/1\r\nSubject: hi\r\n"
