"""Bad requests get a 4xx problem+json naming the field, and write nothing to Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mailstream.events.topics import ACCEPTED, BODIES
from tests.infra.stack import ACME_KEY, GLOBEX_KEY, Stack
from tests.infra.topics import end_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
GOOD: dict[str, Any] = {
    "envelope_sender": "s@acme.test",
    "recipients": [{"email": "r@example.com"}],
    "content": {"subject": "s", "text_body": "t"},
}


@pytest.fixture
def nothing_written(stack: Stack) -> Iterator[None]:
    bootstrap = stack.config["kafka"]["bootstrap_servers"]
    before = [end_offsets(bootstrap, t.name, t.partitions) for t in (ACCEPTED, BODIES)]
    yield
    after = [end_offsets(bootstrap, t.name, t.partitions) for t in (ACCEPTED, BODIES)]
    assert after == before, "a rejected request wrote to Kafka"


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["title"]
    return body


@pytest.mark.usefixtures("nothing_written")
def test_malformed_json(stack: Stack) -> None:
    with stack.client() as c:
        body = _problem(
            c.post("/api/inject/v1", content=b'{"envelope_sender": ', headers={"content-type": "application/json"}), 400
        )
    assert "not JSON" in body["detail"]


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"envelope_sender": None}, "envelope_sender"),
        ({"envelope_sender": "not an address"}, "envelope_sender"),
        ({"recipients": []}, "recipients"),
        ({"recipients": "r@example.com"}, "recipients"),
        ({"recipients": [{"name": "no email"}]}, "recipients[0].email"),
        ({"content": 42}, "content"),
        (
            {"content": {"subject": "s", "attachments": [{"data": "%%%", "content_type": "a/b", "base64": True}]}},
            "content",
        ),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_fields_are_named(stack: Stack, change: dict[str, Any], field: str) -> None:
    request = {**GOOD, **change}
    request = {k: v for k, v in request.items() if v is not None}
    with stack.client() as c:
        body = _problem(c.post("/api/inject/v1", json=request), 422)
    assert any(e["field"].startswith(field) for e in body["errors"]), body


@pytest.mark.usefixtures("nothing_written")
def test_oversize_body_is_refused(stack: Stack) -> None:
    huge = {**GOOD, "content": {"subject": "s", "text_body": "x" * (3 * 1024 * 1024)}}
    with stack.client() as c:
        body = _problem(c.post("/api/inject/v1", json=huge), 413)
    assert "exceeds" in body["detail"]


@pytest.mark.usefixtures("nothing_written")
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key-wrong-key", "Basic abc", "Bearer"])
def test_missing_or_wrong_key_is_401(stack: Stack, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = httpx.post(f"{stack.api}/api/inject/v1", json=GOOD, headers=headers)
    _problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{stack.api}/api/transactions/x", headers=headers).status_code == 401


def test_bad_recipients_fail_alone(stack: Stack) -> None:
    good = f"ok-{uuid.uuid4().hex[:8]}@example.com"
    request = {**GOOD, "recipients": [{"email": "no-at-sign"}, {"email": good}, {"email": "a b@example.com"}]}
    with stack.client() as c:
        r = c.post("/api/inject/v1", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success_count"] == 1
    assert body["fail_count"] == 2
    assert body["failed_recipients"] == ["no-at-sign", "a b@example.com"]
    assert all(e.startswith(rcpt + ": ") for e, rcpt in zip(body["errors"], body["failed_recipients"], strict=True))
    assert [t["recipient"] for t in body["transactions"]] == [good]


def test_tenant_key_cannot_claim_another_tenant(stack: Stack) -> None:
    request = {**GOOD, "metadata": {"tenant": "globex"}}
    with stack.client(ACME_KEY) as c:
        body = c.post("/api/inject/v1", json=request).json()
    assert body["success_count"] == 0
    assert body["fail_count"] == 1
    assert "not the tenant of this API key" in body["errors"][0]


@pytest.mark.parametrize(("key", "value"), [("routing_domain", "127.0.0.1"), ("queue", "spring:globex@example.com")])
def test_tenant_key_may_not_steer_routing_or_name_a_queue_unless_allowed(stack: Stack, key: str, value: str) -> None:
    """The stack's tenants have no `routing_domains` or `queues`: only an admin key may set either (SSRF, and mail
    put in another tenant's queue)."""
    with stack.client(ACME_KEY) as c:
        body = _problem(c.post("/api/inject/v1", json={**GOOD, "metadata": {key: value}}), 403)
    assert [e["field"] for e in body["errors"]] == [f"metadata.{key}"]


def test_transactions_are_visible_only_to_their_tenant(stack: Stack) -> None:
    with stack.client(ACME_KEY) as c:
        tx = c.post("/api/inject/v1", json=GOOD).json()["transactions"][0]["id"]
    stack.wait_status(tx, {"delivered", "ready", "scheduled"}, key=ACME_KEY)
    with stack.client(GLOBEX_KEY) as c:
        _problem(c.get(f"/api/transactions/{tx}"), 404)
    stack.wait_status(tx, {"delivered", "ready", "scheduled"})  # an admin sees every tenant


def test_unknown_transaction_is_404(stack: Stack) -> None:
    with stack.client() as c:
        _problem(c.get("/api/transactions/does-not-exist"), 404)
