"""The signature receivers check: HMAC-SHA256 of "<timestamp>.<body>", refused when stale or altered."""

from __future__ import annotations

import hashlib
import hmac

from mailstream.webhooks.signature import TOLERANCE_SECONDS, signature, verify

SECRET = "whsec-0123456789abcdef"
BODY = b'{"id":"3-7","type":"delivered"}'
NOW = 1_796_000_000


def test_signature_is_the_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, NOW, BODY) == f"sha256={expected}"


def test_verify_accepts_what_was_signed() -> None:
    assert verify(SECRET, signature(SECRET, NOW, BODY), str(NOW), BODY, now=NOW + 10)


def test_verify_refuses_another_body_secret_or_timestamp() -> None:
    header = signature(SECRET, NOW, BODY)
    assert not verify(SECRET, header, str(NOW), BODY + b" ", now=NOW)
    assert not verify("another-secret-0123", header, str(NOW), BODY, now=NOW)
    assert not verify(SECRET, header, str(NOW + 1), BODY, now=NOW)  # the timestamp is signed too


def test_verify_refuses_a_replay_outside_the_tolerance() -> None:
    header = signature(SECRET, NOW, BODY)
    assert verify(SECRET, header, str(NOW), BODY, now=NOW + TOLERANCE_SECONDS)
    assert not verify(SECRET, header, str(NOW), BODY, now=NOW + TOLERANCE_SECONDS + 1)
    assert not verify(SECRET, header, str(NOW), BODY, now=NOW - TOLERANCE_SECONDS - 1)


def test_verify_refuses_a_malformed_timestamp() -> None:
    assert not verify(SECRET, signature(SECRET, NOW, BODY), "soon", BODY, now=NOW)
    assert not verify(SECRET, signature(SECRET, NOW, BODY), "", BODY, now=NOW)
