"""Queue states and cancels through the ingest API against the real pipeline (broker, scheduler, delivery,
SMTP sink): a single transaction cancelled while queued or while stage 2 holds it, a campaign bounced, a
draining queue that delivers what it held and refuses what arrives, and the queue state in the status."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailstream.devtools.capture_sink import CaptureSink
from mailstream.events.records import LogRecord
from mailstream.events.serde import decode
from mailstream.events.topics import EVENTS
from tests.infra.stack import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, Stack, running_stack, transaction_ids
from tests.infra.topics import read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SPAN = 10  # seconds: the tight source sends one message per SPAN, so stage 2 holds the rest
EGRESS = {
    "sources": [
        {"name": "mail2", "daily_limit": 1000},
        {"name": "mail3", "sliding_window": {"limit": 1, "span": f"{SPAN}s"}},
    ],
    "pools": [{"name": "warm", "entries": [{"name": "mail2"}]}, {"name": "tight", "entries": [{"name": "mail3"}]}],
}
QUEUES = {"egress_pool": "warm", "rules": [{"campaign": "tight", "egress_pool": "tight"}]}


@pytest.fixture(scope="module")
def states_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("states")
    with running_stack(kafka_bootstrap, sink.address, workdir, egress=EGRESS, queues=QUEUES) as s:
        yield s


def _delivered_to(sink: CaptureSink, recipients: list[str]) -> set[str]:
    return {rcpt for m in sink.messages for rcpt in m.rcpt_tos} & set(recipients)


def _events(stack: Stack, ids: list[str]) -> list[LogRecord]:
    records = read_all(stack.config["kafka"]["bootstrap_servers"], EVENTS.name, EVENTS.partitions)
    return [rec for _, _, _, value in records if value is not None and (rec := decode(value, LogRecord)).id in ids]


def test_cancel_needs_a_key_and_sees_only_the_callers_transactions(states_stack: Stack) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    [tx] = transaction_ids(states_stack.inject(ACME_KEY, [f"c-{uuid.uuid4().hex[:8]}@example.com"], send_at=later))
    states_stack.wait_status(tx, {"scheduled"})
    r = httpx.post(f"{states_stack.api}/api/transactions/{tx}/cancel", timeout=10)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    with states_stack.client(GLOBEX_KEY) as globex:
        assert globex.post(f"/api/transactions/{tx}/cancel").status_code == 404  # another tenant's
    with states_stack.client(ACME_KEY) as acme:
        r = acme.post(f"/api/transactions/{tx}/cancel", json={"colour": "red"})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "colour"
        assert acme.post("/api/transactions/nope/cancel").status_code == 404
        r = acme.post(f"/api/transactions/{tx}/cancel")  # Koukan's empty body
        assert r.status_code == 200, r.text
        assert r.json()["cancel_requested"] is True
    done = states_stack.wait_status(tx, {"cancelled"}, key=ACME_KEY)
    assert (done["done"], done["final_reason"], done["queue_state"]) == (
        True,
        "cancelled: cancelled by request",
        "active",
    )
    with states_stack.client(ACME_KEY) as acme:
        again = acme.post(f"/api/transactions/{tx}/cancel")
    assert again.status_code == 200
    assert (again.json()["cancel_requested"], again.json()["status"]) == (False, "cancelled")  # already final
    [bounce] = [e for e in _events(states_stack, [tx]) if e.type == "AdminBounce"]
    assert (bounce.response.code, bounce.response.enhanced_code) == (551, "5.7.1")


def test_messages_stage_2_holds_are_cancelled_and_never_sent(states_stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    recipients = [f"t{i}-{tag}@example.com" for i in range(3)]
    first, second, third = transaction_ids(states_stack.inject(ACME_KEY, recipients, campaign="tight"))
    states_stack.wait_status(first, {"delivered"}, key=ACME_KEY)
    for tx in (second, third):
        assert states_stack.wait_status(tx, {"ready", "delivered"}, key=ACME_KEY)["status"] == "ready"
    with states_stack.client(ACME_KEY) as acme:
        assert acme.post(f"/api/transactions/{second}/cancel").status_code == 200
    with states_stack.client(ADMIN_KEY) as admin:
        r = admin.post(
            "/api/admin/bounce", json={"tenant": "acme", "campaign": "tight", "reason": "recall", "duration": "1s"}
        )
    assert r.status_code == 202, r.text
    assert (r.json()["operation"], r.json()["scope"]) == ("cancel", {"tenant": "acme", "campaign": "tight"})
    assert states_stack.wait_status(second, {"cancelled", "delivered"}, key=ACME_KEY)["status"] == "cancelled"
    assert (
        states_stack.wait_status(third, {"cancelled", "delivered"}, key=ACME_KEY)["final_reason"] == "cancelled: recall"
    )
    time.sleep(2 * SPAN + 2)  # the window would have let both go by now
    assert _delivered_to(sink, recipients) == {recipients[0]}
    kinds = sorted(e.type for e in _events(states_stack, [second, third]))
    assert kinds == ["AdminBounce", "AdminBounce", "Reception", "Reception"]


def test_a_draining_queue_delivers_what_it_holds_and_refuses_what_arrives(
    states_stack: Stack, sink: CaptureSink
) -> None:
    tag = uuid.uuid4().hex[:8]
    campaign = f"drain-{tag}"
    soon = (datetime.now(UTC) + timedelta(seconds=6)).isoformat()
    old_rcpts = [f"o{i}-{tag}@example.com" for i in range(2)]
    old = transaction_ids(states_stack.inject(ACME_KEY, old_rcpts, campaign=campaign, send_at=soon))
    for tx in old:
        states_stack.wait_status(tx, {"scheduled"}, key=ACME_KEY)
    with states_stack.client(ACME_KEY) as acme:
        r = acme.post("/api/admin/queue-state", json={"campaign": campaign, "state": "draining", "reason": "moving"})
    assert r.status_code == 202, r.text
    assert (r.json()["operation"], r.json()["scope"]) == ("drain", {"tenant": "acme", "campaign": campaign})

    new_rcpt = f"n-{tag}@example.com"
    answer = states_stack.inject(ACME_KEY, [new_rcpt], campaign=campaign)
    if answer["transactions"]:  # ingest had not seen the state yet: stage 1 refuses it
        [tx] = transaction_ids(answer)
        refused = states_stack.wait_status(tx, {"bounced", "delivered"}, key=ACME_KEY)
        assert refused["status"] == "bounced"
        assert refused["queue_state"] == "draining"
        assert refused["final_reason"] == f"refused: queue {campaign}:acme@example.com is draining: moving"
        assert [e.type for e in _events(states_stack, [tx]) if e.type != "Reception"] == ["Rejection"]
    else:
        assert answer["errors"] == [f"{new_rcpt}: queue {campaign}:acme@example.com is draining: moving"]
    for tx in old:
        assert states_stack.wait_status(tx, {"delivered"}, key=ACME_KEY)["queue_state"] == "draining"
    assert _delivered_to(sink, [*old_rcpts, new_rcpt]) == set(old_rcpts)

    deadline = time.monotonic() + 30  # once the published state shows it, ingest refuses at once
    while True:
        answer = states_stack.inject(ACME_KEY, [new_rcpt], campaign=campaign)
        if not answer["transactions"]:
            break
        assert time.monotonic() < deadline, answer
        time.sleep(0.5)
    assert answer["failed_recipients"] == [new_rcpt]
    with states_stack.client(ACME_KEY) as acme:
        stats = acme.get("/api/admin/suspensions").json()["data"]
        assert [(s["campaign"], s["state"]) for s in stats if s["campaign"] == campaign] == [(campaign, "draining")]
        r = acme.post("/api/admin/queue-state", json={"campaign": campaign, "state": "active"})
    assert r.status_code == 202, r.text
    assert r.json()["operation"] == "resume"


@pytest.mark.parametrize(
    ("key", "path", "body", "status", "field"),
    [
        (ADMIN_KEY, "/api/admin/queue-state", {"tenant": "acme"}, 422, "state"),
        (ADMIN_KEY, "/api/admin/queue-state", {"tenant": "acme", "state": "paused"}, 422, "state"),
        (ADMIN_KEY, "/api/admin/queue-state", {"state": "draining"}, 422, "(body)"),
        (ACME_KEY, "/api/admin/queue-state", {"tenant": "globex", "state": "disabled"}, 403, "tenant"),
        (ADMIN_KEY, "/api/admin/bounce", {"tenant": "acme"}, 422, "reason"),
        (ADMIN_KEY, "/api/admin/bounce", {"tenant": "acme", "reason": "x", "duration": "-1s"}, 422, "duration"),
    ],
)
def test_bad_state_and_bounce_requests_name_the_field(
    states_stack: Stack, key: str, path: str, body: dict[str, Any], status: int, field: str
) -> None:
    with states_stack.client(key) as client:
        r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["field"] == field
    assert httpx.post(states_stack.api + path, json=body, timeout=10).status_code == 401
