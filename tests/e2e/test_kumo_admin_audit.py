"""KumoMTA's admin API against the real pipeline, with the audit trail: a suspension through
POST /api/admin/suspend/v1 holds a campaign's mail, the action is in GET /api/admin/audit (for the admin and for the
tenant whose queues it names), and DELETE /api/admin/suspend/v1 by its id releases the mail."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import ACME_KEY, ADMIN_KEY, Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def kumo_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(kafka_bootstrap, sink.address, tmp_path_factory.mktemp("kumo")) as s:
        yield s


def eventually(stack: Stack, read: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    value = read()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout}s\n" + stack.log_tail("ingest"))
        time.sleep(0.3)  # polling a real process: there is no clock to advance
        value = read()
    return value


def audit(stack: Stack, key: str = ADMIN_KEY, **params: str) -> list[dict[str, Any]]:
    with stack.client(key) as client:
        r = client.get("/api/admin/audit", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_a_kumomta_suspension_holds_mail_is_audited_and_its_delete_releases_it(
    kumo_stack: Stack, sink: CaptureSink
) -> None:
    campaign = f"kumo-{uuid.uuid4().hex[:8]}"
    with kumo_stack.client(ADMIN_KEY) as admin:
        r = admin.post(
            "/api/admin/suspend/v1",
            json={"tenant": "acme", "campaign": campaign, "reason": "kumo hold", "duration": "1h"},
            headers={"X-Request-Id": f"req-{campaign}"},
        )
    assert r.status_code == 200, r.text
    ident = r.json()["id"]
    assert uuid.UUID(ident)

    [entry] = audit(kumo_stack, operation="suspend", scope=f"campaign={campaign}")
    assert entry["actor"] == hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:16]  # the key's id, not the key
    assert (entry["result"], entry["route"], entry["reason"]) == ("accepted", "POST /api/admin/suspend/v1", "kumo hold")
    assert entry["request_id"] == f"req-{campaign}"
    assert entry["scope"] == {"tenant": "acme", "campaign": campaign}
    assert [e["id"] for e in audit(kumo_stack, ACME_KEY, scope=f"campaign={campaign}")] == [entry["id"]]

    recipients = [f"k{i}-{campaign}@example.com" for i in range(2)]
    with kumo_stack.client(ACME_KEY) as acme:
        r = acme.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "sender@acme.test",
                "recipients": [{"email": rcpt} for rcpt in recipients],
                "metadata": {"campaign": campaign},
                "content": {"subject": "s", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    ids = [str(t["id"]) for t in r.json()["transactions"]]
    for tx in ids:
        assert kumo_stack.wait_status(tx, {"suspended", "delivered"}, key=ACME_KEY)["status"] == "suspended"
    assert not [m for m in sink.messages if set(m.rcpt_tos) & set(recipients)]

    def listed() -> list[dict[str, Any]]:
        with kumo_stack.client(ADMIN_KEY) as admin:
            return list(admin.get("/api/admin/suspend/v1").json())

    [held] = [
        e
        for e in eventually(kumo_stack, listed, lambda found: any(e["id"] == ident for e in found))
        if e["id"] == ident
    ]
    assert (held["tenant"], held["campaign"], held["reason"]) == ("acme", campaign, "kumo hold")

    with kumo_stack.client(ADMIN_KEY) as admin:
        r = admin.request("DELETE", "/api/admin/suspend/v1", json={"id": ident})
    assert r.status_code == 200, r.text
    for tx in ids:
        kumo_stack.wait_status(tx, {"delivered"}, key=ACME_KEY)
    assert {rcpt for m in sink.messages for rcpt in m.rcpt_tos} >= set(recipients)
    [resumed] = audit(kumo_stack, operation="resume", scope=f"campaign={campaign}")
    assert (resumed["result"], resumed["parameters"]) == ("accepted", {"id": ident})
    assert eventually(kumo_stack, listed, lambda found: all(e["id"] != ident for e in found)) is not None
