"""A sink answering 550 bounces the transaction (classified); one answering 451 defers it."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.infra.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _submit(stack: Stack, rcpt: str) -> str:
    with stack.client() as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "sender@acme.test",
                "recipients": [{"email": rcpt}],
                "content": {"subject": "s", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    return str(r.json()["transactions"][0]["id"])


def test_550_reply_bounces_with_classification(stack: Stack) -> None:
    tx = _submit(stack, f"bounce-{uuid.uuid4().hex[:8]}@example.com")
    status = stack.wait_status(tx, {"bounced", "delivered", "deferred"})
    assert status["status"] == "bounced"
    assert status["done"] is True
    response = status["last_response"]
    assert response["code"] == 550
    assert response["enhanced_code"] == "5.1.1"
    assert response["content"] == "mailbox unknown"
    assert response["command"] == "RCPT"
    assert status["bounce_classification"] == "InvalidRecipient"
    assert status["bounce_type"] == "hard"


def test_451_reply_is_a_transient_failure_with_retry_time(stack: Stack) -> None:
    tx = _submit(stack, f"defer-{uuid.uuid4().hex[:8]}@example.com")
    status = stack.wait_status(tx, {"deferred", "bounced", "delivered"})
    assert status["status"] == "deferred"
    assert status["done"] is False
    assert status["num_attempts"] == 1
    response = status["attempts"][0]["response"]
    assert (response["code"], response["enhanced_code"], response["content"]) == (451, "4.3.0", "try again later")
    assert status["attempts"][0]["outcome"] == "TRANSIENT"
    created = datetime.fromisoformat(status["created_at"])
    retry_at = datetime.fromisoformat(status["next_attempt_at"])
    # retry_interval is 20 minutes, with at most ±30 s of jitter.
    assert 19 * 60 <= (retry_at - created).total_seconds() <= 21 * 60


def test_null_queue_discards(stack: Stack) -> None:
    with stack.client() as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "sender@acme.test",
                "recipients": [{"email": "x@example.com"}],
                "metadata": {"queue": "null"},
                "content": {"subject": "s", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    tx = r.json()["transactions"][0]
    assert tx["queue"] == "null"
    status = stack.wait_status(tx["id"], {"cancelled", "delivered", "ready"})
    assert status["status"] == "cancelled"
    assert status["attempts"] == []
    assert "null queue" in status["final_reason"]
