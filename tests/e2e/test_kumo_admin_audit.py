"""KumoMTA's admin API against the real pipeline, with the audit trail: a suspension through
POST /api/admin/suspend/v1 holds a campaign's mail, the action is in GET /api/admin/audit (for the admin and for the
tenant whose queues it names), and DELETE /api/admin/suspend/v1 by its id releases the mail; a tenant's
POST /api/admin/rebind/v1 moves its campaign's queued mail to another queue and pool (stage 1 counts them in the
result its Location names), the mail is sent through that pool, and the rebind is in the audit trail."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import ACME_KEY, ADMIN_KEY, Stack, running_stack, transaction_ids

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EGRESS = {  # two pools, each its own source: where a rebound message was sent from tells which pool it went by
    "sources": [{"name": "mail2", "daily_limit": 1000}, {"name": "mail3", "daily_limit": 1000}],
    "pools": [{"name": "warm", "entries": [{"name": "mail2"}]}, {"name": "cold", "entries": [{"name": "mail3"}]}],
}


@pytest.fixture(scope="module")
def kumo_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("kumo")
    with running_stack(kafka_bootstrap, sink.address, workdir, egress=EGRESS, queues={"egress_pool": "warm"}) as s:
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
    ids = inject(kumo_stack, recipients, campaign=campaign)
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


def inject(stack: Stack, recipients: list[str], **metadata: str) -> list[str]:
    return transaction_ids(stack.inject(ACME_KEY, recipients, **metadata))


def test_a_kumomta_rebind_moves_queued_mail_to_another_queue_and_pool_and_is_audited(
    kumo_stack: Stack, sink: CaptureSink
) -> None:
    tag = uuid.uuid4().hex[:8]
    campaign, moved = f"kr-{tag}", f"moved-{tag}"
    recipients = [f"r{i}-{tag}@example.com" for i in range(2)]
    later = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()  # still queued when the rebind comes
    ids = inject(kumo_stack, recipients, campaign=campaign, send_at=later)
    other = inject(kumo_stack, [f"o-{tag}@example.com"], campaign=f"ko-{tag}", send_at=later)
    for tx in ids + other:
        kumo_stack.wait_status(tx, {"scheduled"}, key=ACME_KEY)
    target = f"{moved}:acme@example.com"
    body = {"campaign": campaign, "reason": "kumo rebind", "data": {"queue": target, "egress_pool": "cold"}}
    with kumo_stack.client(ACME_KEY) as acme:  # a tenant's key: its own queues (the tenant is the key's)
        r = acme.post("/api/admin/rebind/v1", json={**body, "suppress_logging": False, "always_flush": False})
        assert r.status_code == 200, r.text
        assert r.json() == {}
        location = r.headers["location"]

        def result() -> dict[str, Any]:
            got = acme.get(location)
            return dict(got.json()) if got.status_code == 200 else {}

        answer = eventually(kumo_stack, result, lambda a: bool(a.get("done")))
    assert (answer["operation"], answer["affected_messages"], answer["errors"]) == ("rebind", 2, [])
    assert f"{campaign}:acme@example.com" in answer["affected_queues"]

    def scheduled(tx: str) -> Callable[[], dict[str, Any]]:
        return lambda: kumo_stack.wait_status(tx, {"scheduled"}, key=ACME_KEY)

    for tx in ids:  # the new status version reaches ingest's view soon after the result
        status = eventually(kumo_stack, scheduled(tx), lambda s: s["queue"] == target)
        assert (status["campaign"], status["egress_pool"]) == (moved, "cold")
    assert kumo_stack.wait_status(other[0], {"scheduled"}, key=ACME_KEY)["queue"] == f"ko-{tag}:acme@example.com"
    for tx in ids:
        done = kumo_stack.wait_status(tx, {"delivered"}, timeout=90, key=ACME_KEY)
        assert (done["queue"], done["attempts"][-1]["egress_source"]) == (target, "mail3")
    assert kumo_stack.wait_status(other[0], {"delivered"}, timeout=90)["attempts"][-1]["egress_source"] == "mail2"

    [entry] = audit(kumo_stack, operation="rebind", scope=f"campaign={campaign}")
    assert (entry["route"], entry["result"], entry["reason"], entry["actor_tenant"]) == (
        "POST /api/admin/rebind/v1",
        "accepted",
        "kumo rebind",
        "acme",
    )
    assert entry["scope"] == {"tenant": "acme", "campaign": campaign}
    assert entry["parameters"] == {"to_queue": target, "to_pool": "cold"}
    assert location.endswith(entry["command_ids"][0])
    assert [e["id"] for e in audit(kumo_stack, ACME_KEY, operation="rebind", scope=f"campaign={campaign}")] == [
        entry["id"]
    ]
