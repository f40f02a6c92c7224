"""Suppression lists across the running pipeline: a hard bounce at the sink puts its recipient on the tenant's
list, after which the tenant's mail to it is refused at submission (inject's failed_recipients, the gateway's
550 5.1.1 at RCPT) and never reaches the scheduler, while another tenant's mail to it still goes; the API adds,
lists, searches, pages and removes entries, each tenant only its own."""

from __future__ import annotations

import smtplib
import time
import uuid
from typing import Any

import pytest

from mailstream.events.records import AcceptedMessage
from mailstream.events.serde import decode
from mailstream.events.topics import ACCEPTED
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, GatewayPorts
from tests.infra.stack import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, Stack
from tests.infra.topics import read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def inject(stack: Stack, key: str, *recipients: str) -> dict[str, Any]:
    with stack.client(key) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "sender@acme.test",
                "recipients": [{"email": rcpt} for rcpt in recipients],
                "content": {"subject": "s", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def listed(stack: Stack, key: str, **params: str) -> list[dict[str, Any]]:
    with stack.client(key) as client:
        r = client.get("/api/suppressions", params=params)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["suppressions"]
    return entries


def wait_listed(stack: Stack, key: str, want: int, timeout: float = 30.0, **params: str) -> list[dict[str, Any]]:
    """The entries matching `params` once there are `want` of them (stage 1 applies a change, ingest reads it)."""
    deadline = time.monotonic() + timeout
    while True:
        found = listed(stack, key, **params)
        if len(found) == want or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def accepted_for(stack: Stack, recipient: str) -> list[AcceptedMessage]:
    records = read_all(stack.bootstrap, ACCEPTED.name, ACCEPTED.partitions)
    return [m for m in (decode(v, AcceptedMessage) for _, _, _, v in records) if m.recipient == recipient]


def test_a_hard_bounce_suppresses_the_address_for_its_tenant_only(stack: Stack, gateway: GatewayPorts) -> None:
    rcpt = f"bounce-{uuid.uuid4().hex[:8]}@example.com"  # the sink answers 550 5.1.1
    [first] = inject(stack, ACME_KEY, rcpt)["transactions"]
    assert stack.wait_status(first["id"], {"bounced", "delivered"})["status"] == "bounced"
    [entry] = wait_listed(stack, ACME_KEY, 1, search=rcpt)
    assert (entry["address"], entry["tenant"], entry["source"]) == (rcpt, "acme", "bounce")
    assert (entry["transaction_id"], entry["bounce_type"], entry["expires_at"]) == (first["id"], "hard", None)
    assert entry["response"]["enhanced_code"] == "5.1.1"

    other = f"ok-{uuid.uuid4().hex[:8]}@example.com"
    again = inject(stack, ACME_KEY, rcpt, other)
    assert (again["success_count"], again["failed_recipients"]) == (1, [rcpt])
    assert again["errors"] == [f"{rcpt}: <{rcpt}> is on the suppression list: {entry['reason']}"]
    assert [m.id for m in accepted_for(stack, rcpt)] == [first["id"]]  # the second never went on

    theirs = inject(stack, GLOBEX_KEY, rcpt)  # globex's list does not hold it: its mail goes (and bounces)
    assert theirs["success_count"] == 1
    assert stack.wait_status(theirs["transactions"][0]["id"], {"bounced", "delivered"})["status"] == "bounced"
    [their_entry] = wait_listed(stack, GLOBEX_KEY, 1, search=rcpt)  # and its bounce puts it on globex's list
    assert their_entry["transaction_id"] == theirs["transactions"][0]["id"]

    with smtplib.SMTP("127.0.0.1", gateway.submission_plain, timeout=60) as smtp:
        smtp.login(ACME_USER, ACME_PASSWORD)
        smtp.mail("app@acme.test")
        code, reply = smtp.rcpt(rcpt)
        assert code == 550
        assert reply.startswith(b"5.1.1 ")
        assert b"suppression list" in reply
        assert smtp.rcpt(other)[0] == 250  # the session goes on for the other recipients
        smtp.rset()


def test_the_api_adds_lists_pages_and_removes_each_tenants_own_entries(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    addresses = [f"api-{tag}-{i}@example.com" for i in range(5)]
    with stack.client(ACME_KEY) as client:
        r = client.post(
            "/api/suppressions", json={"entries": [{"address": a, "reason": "unsubscribed"} for a in addresses]}
        )
    assert r.status_code == 202, r.text
    found = wait_listed(stack, ACME_KEY, 5, search=tag)
    assert [e["address"] for e in found] == addresses
    assert {(e["source"], e["reason"], e["created_by"]) for e in found} == {("api", "unsubscribed", "tenant:acme")}

    pages, cursor, seen = 0, None, []
    while True:
        with stack.client(ACME_KEY) as client:
            page = client.get(
                "/api/suppressions", params={"search": tag, "limit": 2, **({"cursor": cursor} if cursor else {})}
            ).json()
        seen += [e["address"] for e in page["suppressions"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (addresses, 3)

    assert listed(stack, GLOBEX_KEY, search=tag) == []
    with stack.client(GLOBEX_KEY) as client:
        assert client.delete(f"/api/suppressions/{addresses[0]}").status_code == 404
        assert client.get("/api/suppressions", params={"tenant": "acme"}).status_code == 403
    assert [e["address"] for e in listed(stack, ADMIN_KEY, tenant="acme", search=tag)] == addresses

    assert inject(stack, ACME_KEY, addresses[0])["failed_recipients"] == [addresses[0]]
    with stack.client(ACME_KEY) as client:
        assert client.delete(f"/api/suppressions/{addresses[0]}").status_code == 204
    assert [e["address"] for e in wait_listed(stack, ACME_KEY, 4, search=tag)] == addresses[1:]
    assert inject(stack, ACME_KEY, addresses[0])["success_count"] == 1
