"""The capacity API and queue suspension against the real pipeline: servers' daily usage rises with sends,
stats count by tenant and campaign (a tenant sees only its own), and a suspended campaign keeps its
messages until it is resumed, then delivers them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EGRESS = {
    "sources": [
        {"name": "mail2", "daily_limit": 1000, "from_email": "adam@mail2.test"},
        {"name": "mail3", "daily_limit": 1000, "from_email": "adam@mail3.test"},
    ],
    "pools": [{"name": "warm", "policy": "most_remaining", "entries": [{"name": "mail2"}, {"name": "mail3"}]}],
}


@pytest.fixture(scope="module")
def capacity_stack(
    kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("capacity")
    with running_stack(kafka_bootstrap, sink.address, workdir, egress=EGRESS, queues={"egress_pool": "warm"}) as s:
        yield s


def _submit(stack: Stack, key: str, recipients: list[str], campaign: str) -> list[str]:
    with stack.client(key) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "sender@acme.test",
                "recipients": [{"email": rcpt} for rcpt in recipients],
                "metadata": {"campaign": campaign},
                "content": {"subject": "s", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    return [str(t["id"]) for t in r.json()["transactions"]]


def _eventually(stack: Stack, read: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    value = read()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout}s\n" + stack.log_tail("scheduler"))
        time.sleep(0.3)
        value = read()
    return value


def _get(stack: Stack, path: str, key: str = ADMIN_KEY, **params: str) -> Any:
    with stack.client(key) as client:
        r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_every_queue_endpoint_needs_a_key(capacity_stack: Stack) -> None:
    for method, path in (
        ("GET", "/api/queue/servers"),
        ("GET", "/api/queue/stats"),
        ("POST", "/api/admin/suspend"),
        ("DELETE", "/api/admin/suspend"),
    ):
        r = httpx.request(method, capacity_stack.api + path, json={"tenant": "acme"}, timeout=10)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"


def test_servers_daily_used_goes_up_after_sends(capacity_stack: Stack) -> None:
    def used() -> dict[str, int]:
        return {s["name"]: s["daily_used"] for s in _get(capacity_stack, "/api/queue/servers", ACME_KEY)}

    before = used()
    tag = uuid.uuid4().hex[:8]
    ids = _submit(capacity_stack, ACME_KEY, [f"cap{i}-{tag}@example.com" for i in range(6)], f"cap-{tag}")
    for tx in ids:
        capacity_stack.wait_status(tx, {"delivered"})
    after = _eventually(capacity_stack, used, lambda u: sum(u.values()) == sum(before.values()) + 6)
    assert all(after[name] > before[name] for name in ("mail2", "mail3"))  # most remaining: both took turns
    servers = {s["name"]: s for s in _get(capacity_stack, "/api/queue/servers")}
    assert servers["mail2"]["daily_remaining"] == 1000 - after["mail2"]
    assert servers["mail2"]["from_email"] == "adam@mail2.test"
    assert servers["mail2"]["daily_limit"] == 1000


def test_stats_count_per_tenant_and_campaign(capacity_stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    acme = _submit(capacity_stack, ACME_KEY, [f"a{i}-{tag}@example.com" for i in range(3)], f"c-{tag}")
    globex = _submit(capacity_stack, GLOBEX_KEY, [f"g{i}-{tag}@example.com" for i in range(2)], f"c-{tag}")
    for tx in acme:
        capacity_stack.wait_status(tx, {"delivered"}, key=ACME_KEY)
    for tx in globex:
        capacity_stack.wait_status(tx, {"delivered"}, key=GLOBEX_KEY)

    def stats(key: str, **params: str) -> dict[str, Any]:
        return dict(_get(capacity_stack, "/api/queue/stats", key, campaign=f"c-{tag}", **params))

    mine = _eventually(capacity_stack, lambda: stats(ACME_KEY), lambda s: s["total_sent"] == 3)
    assert (mine["total_queued"], mine["total_sending"], mine["total_failed"]) == (0, 0, 0)
    assert {row["tenant"] for row in mine["campaigns"]} == {"acme"}
    assert mine["estimated_completion"]["phrase"] == "nothing to send"
    assert _eventually(capacity_stack, lambda: stats(GLOBEX_KEY), lambda s: s["total_sent"] == 2)["total_sent"] == 2
    everyone = _eventually(capacity_stack, lambda: stats(ADMIN_KEY), lambda s: s["total_sent"] == 5)
    assert {row["tenant"] for row in everyone["campaigns"]} == {"acme", "globex"}
    assert stats(ADMIN_KEY, tenant="globex")["total_sent"] == 2

    with capacity_stack.client(GLOBEX_KEY) as client:
        r = client.get("/api/queue/stats", params={"tenant": "acme"})
    assert r.status_code == 403
    assert r.json()["errors"][0]["field"] == "tenant"


def test_suspended_campaign_keeps_its_messages_until_resumed(capacity_stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    campaign = f"hold-{tag}"
    with capacity_stack.client(ACME_KEY) as client:
        r = client.post("/api/admin/suspend", json={"campaign": campaign, "reason": "complaints"})
    assert r.status_code == 202, r.text
    assert r.json()["scope"] == {"tenant": "acme", "campaign": campaign}  # a tenant key acts on its own queues

    recipients = [f"h{i}-{tag}@example.com" for i in range(3)]
    ids = _submit(capacity_stack, ACME_KEY, recipients, campaign)
    for tx in ids:
        seen = capacity_stack.wait_status(tx, {"suspended", "ready", "delivered"}, key=ACME_KEY)
        assert seen["status"] == "suspended"
    stats = _eventually(
        capacity_stack,
        lambda: _get(capacity_stack, "/api/queue/stats", ACME_KEY, campaign=campaign),
        lambda s: s["by_status"].get("suspended") == 3,
    )
    assert [(s["campaign"], s["reason"]) for s in stats["suspensions"]] == [(campaign, "complaints")]
    assert stats["total_queued"] == 3
    time.sleep(3)  # they stay: nothing reaches the sink
    assert not [m for m in sink.messages if set(m.rcpt_tos) & set(recipients)]
    with capacity_stack.client(ACME_KEY) as client:
        assert client.get(f"/api/transactions/{ids[0]}").json()["status"] == "suspended"

    with capacity_stack.client(ACME_KEY) as client:
        r = client.delete("/api/admin/suspend", params={"campaign": campaign})
    assert r.status_code == 202, r.text
    for tx in ids:
        capacity_stack.wait_status(tx, {"delivered"}, key=ACME_KEY)
    assert {rcpt for m in sink.messages for rcpt in m.rcpt_tos} >= set(recipients)
    done = _eventually(
        capacity_stack,
        lambda: _get(capacity_stack, "/api/queue/stats", ACME_KEY, campaign=campaign),
        lambda s: s["total_sent"] == 3 and not s["suspensions"],
    )
    assert done["total_queued"] == 0


def test_a_tenant_cannot_lift_an_admin_suspension(capacity_stack: Stack) -> None:
    scope = {"tenant": "acme", "campaign": f"abuse-{uuid.uuid4().hex[:8]}"}
    with capacity_stack.client(ADMIN_KEY) as admin:
        assert admin.post("/api/admin/suspend", json={**scope, "reason": "abuse report"}).status_code == 202
        _eventually(
            capacity_stack,
            lambda: _get(capacity_stack, "/api/admin/suspensions", ACME_KEY),
            lambda found: any(s["campaign"] == scope["campaign"] for s in found),
        )
        with capacity_stack.client(ACME_KEY) as tenant:
            r = tenant.delete("/api/admin/suspend", params={"campaign": scope["campaign"]})
        assert r.status_code == 403, r.text
        assert admin.request("DELETE", "/api/admin/suspend", json=scope).status_code == 202
    _eventually(
        capacity_stack,
        lambda: _get(capacity_stack, "/api/admin/suspensions", ACME_KEY),
        lambda found: all(s["campaign"] != scope["campaign"] for s in found),
    )


@pytest.mark.parametrize(
    ("key", "body", "status", "field"),
    [
        (ADMIN_KEY, {}, 422, "(body)"),
        (ADMIN_KEY, {"tenant": "acme", "duration": "soon"}, 422, "duration"),
        (ADMIN_KEY, {"tenant": "acme", "colour": "red"}, 422, "colour"),
        (ACME_KEY, {"tenant": "globex"}, 403, "tenant"),
    ],
)
def test_bad_suspend_requests_name_the_field(
    capacity_stack: Stack, key: str, body: dict[str, Any], status: int, field: str
) -> None:
    with capacity_stack.client(key) as client:
        r = client.post("/api/admin/suspend", json=body)
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["field"] == field
