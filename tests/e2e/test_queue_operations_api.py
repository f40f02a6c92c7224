"""Queue operations through POST /api/queue/operations against the real pipeline (broker, scheduler, delivery, SMTP
sink): rebind to another pool, retry now, purge and set_priority, each answered with its QueueOperationResult
counted by the stage that owns the messages; what they did survives a scheduler SIGKILL and restart; a tenant's key
touches only its own messages; bad requests are problems."""

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
from mailstream.events.records import AuditRecord, LogRecord
from mailstream.events.serde import decode
from mailstream.events.topics import AUDIT, EVENTS
from tests.infra.stack import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, Stack, running_stack, transaction_ids
from tests.infra.topics import read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EGRESS = {
    "sources": [{"name": "mail2", "daily_limit": 1000}, {"name": "mail3", "daily_limit": 1000}],
    "pools": [{"name": "warm", "entries": [{"name": "mail2"}]}, {"name": "cold", "entries": [{"name": "mail3"}]}],
}


@pytest.fixture(scope="module")
def ops_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("operations")
    with running_stack(kafka_bootstrap, sink.address, workdir, egress=EGRESS, queues={"egress_pool": "warm"}) as s:
        yield s


def _inject(stack: Stack, key: str, recipients: list[str], **metadata: str) -> list[str]:
    return transaction_ids(stack.inject(key, recipients, **metadata))


def _operate(stack: Stack, key: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    with stack.client(key) as client:
        r = client.post("/api/queue/operations", json=body, params={"wait": 20})
    assert r.status_code == status, r.text
    return dict(r.json())


def _later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _restart_scheduler(stack: Stack) -> None:
    stack.kill("scheduler")
    stack.start_service("scheduler")


def test_rebind_to_a_pool_survives_a_restart_and_sends_through_it(ops_stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    campaign = f"rb-{tag}"
    ids = _inject(
        ops_stack, ACME_KEY, [f"r{i}-{tag}@example.com" for i in range(3)], campaign=campaign, send_at=_later(25)
    )
    for tx in ids:
        ops_stack.wait_status(tx, {"scheduled"})
    queue = f"{campaign}:acme@example.com"
    answer = _operate(
        ops_stack, ACME_KEY, {"operation": "rebind", "queue_name": queue, "metadata": {"egress_pool": "cold"}}
    )
    assert (answer["operation"], answer["affected_messages"], answer["affected_queues"]) == ("rebind", 3, [queue])
    assert (answer["success"], answer["done"], answer["errors"]) == (True, True, [])
    assert ops_stack.wait_status(ids[0], {"scheduled"})["egress_pool"] == "cold"
    _restart_scheduler(ops_stack)
    for tx in ids:
        done = ops_stack.wait_status(tx, {"delivered"}, timeout=90)
        assert (done["egress_pool"], done["attempts"][-1]["egress_source"], done["id"]) == ("cold", "mail3", tx)
    with ops_stack.client(ADMIN_KEY) as admin:
        got = admin.get(f"/api/queue/operations/{answer['id']}")
    assert got.status_code == 200
    assert got.json()["affected_messages"] == 3
    audit = [
        rec
        for _, _, _, v in read_all(ops_stack.bootstrap, AUDIT.name, AUDIT.partitions)
        if v is not None and answer["id"] in (rec := decode(v, AuditRecord)).command_ids
    ]
    assert [(a.operation, a.scope, a.parameters, a.result) for a in audit] == [
        ("rebind", {"queue": queue, "tenant": "acme"}, {"to_pool": "cold"}, "accepted")
    ]


def test_retry_makes_a_deferred_message_try_again_now(ops_stack: Stack) -> None:
    [tx] = _inject(ops_stack, ACME_KEY, [f"defer-{uuid.uuid4().hex[:8]}@example.com"])
    first = ops_stack.wait_status(tx, {"deferred"})
    assert first["num_attempts"] == 1  # the next one is 20 minutes away
    answer = _operate(ops_stack, ADMIN_KEY, {"operation": "retry", "message_ids": [tx]})
    assert (answer["affected_messages"], answer["affected_queues"]) == (1, ["acme@example.com"])
    for _ in range(60):
        status = ops_stack.wait_status(tx, {"deferred", "ready", "in_delivery"})
        if status["num_attempts"] == 2:
            break
        time.sleep(0.5)
    assert status["num_attempts"] == 2


def test_purge_and_set_priority_by_scope_and_id_survive_a_restart(ops_stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    purged = _inject(
        ops_stack, ACME_KEY, [f"p{i}-{tag}@example.com" for i in range(2)], campaign=f"p-{tag}", send_at=_later(3600)
    )
    kept = _inject(
        ops_stack, ACME_KEY, [f"k{i}-{tag}@example.com" for i in range(2)], campaign=f"k-{tag}", send_at=_later(3600)
    )
    for tx in purged + kept:
        ops_stack.wait_status(tx, {"scheduled"})
    answer = _operate(ops_stack, ACME_KEY, {"operation": "purge", "campaign": f"p-{tag}", "reason": "sent twice"})
    assert answer["affected_messages"] == 2
    for tx in purged:
        done = ops_stack.wait_status(tx, {"cancelled"}, key=ACME_KEY)
        assert (done["final_reason"], done["bounce_classification"]) == ("cancelled: purged: sent twice", "AdminBounce")
    logs = [
        rec
        for _, _, _, v in read_all(ops_stack.bootstrap, EVENTS.name, EVENTS.partitions)
        if v is not None and (rec := decode(v, LogRecord)).id in purged
    ]
    assert sorted(r.type for r in logs) == ["AdminBounce", "AdminBounce", "Reception", "Reception"]

    body = {"operation": "set_priority", "message_ids": [*kept, *purged], "metadata": {"priority": 9}}
    answer = _operate(ops_stack, ACME_KEY, body)
    assert answer["affected_messages"] == 2
    assert sorted(answer["errors"]) == sorted(f"{tx} is already cancelled" for tx in purged)
    assert answer["success"] is False
    _restart_scheduler(ops_stack)
    again = _operate(ops_stack, ACME_KEY, {**body, "message_ids": kept})
    assert (again["affected_messages"], again["errors"]) == (0, [])  # the restarted stage has them at 9 already
    lower = _operate(ops_stack, ACME_KEY, {**body, "message_ids": kept, "metadata": {"priority": 1}})
    assert lower["affected_messages"] == 2


def test_a_tenants_key_touches_only_its_own_queues_and_messages(ops_stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = _inject(ops_stack, ACME_KEY, [f"t-{tag}@example.com"], campaign=f"t-{tag}", send_at=_later(3600))
    ops_stack.wait_status(ids[0], {"scheduled"})
    answer = _operate(ops_stack, GLOBEX_KEY, {"operation": "purge", "message_ids": ids})
    assert (answer["affected_messages"], answer["errors"]) == (
        0,
        [f"{ids[0]} is not a transaction visible to this API key"],
    )
    refused = _operate(ops_stack, GLOBEX_KEY, {"operation": "purge", "tenant": "acme"}, status=403)
    assert refused["title"] == "Forbidden"
    moved = {"operation": "rebind", "message_ids": ids, "metadata": {"queue": f"t-{tag}:globex@example.com"}}
    assert _operate(ops_stack, ACME_KEY, moved, status=403)["detail"].startswith("metadata.queue")
    own = _operate(ops_stack, GLOBEX_KEY, {"operation": "purge", "campaign": f"t-{tag}"})  # globex's own: none
    assert own["affected_messages"] == 0
    with ops_stack.client(GLOBEX_KEY) as globex:
        assert globex.get(f"/api/queue/operations/{own['id']}").status_code == 200
    with ops_stack.client(ACME_KEY) as acme:
        assert acme.get(f"/api/queue/operations/{own['id']}").status_code == 404
    assert ops_stack.wait_status(ids[0], {"scheduled"})["status"] == "scheduled"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operation": "explode", "tenant": "acme"}, "operation"),
        ({"operation": "purge"}, "(body)"),
        ({"operation": "purge", "tenant": "acme", "message_ids": ["x"]}, "(body)"),
        ({"operation": "set_priority", "tenant": "acme", "metadata": {"priority": 11}}, "metadata.priority"),
        ({"operation": "rebind", "tenant": "acme", "metadata": {"egress_pool": "nope"}}, None),
        ({"operation": "bounce", "tenant": "acme"}, "(body)"),
        ({"operation": "retry", "tenant": "acme", "metadata": {"colour": "red"}}, "metadata.colour"),
    ],
)
def test_bad_operations_are_problems(ops_stack: Stack, body: dict[str, Any], field: str | None) -> None:
    with ops_stack.client(ACME_KEY) as acme:
        r = acme.post("/api/queue/operations", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert field in {e["field"] for e in r.json().get("errors", [])}, r.text
    assert httpx.post(f"{ops_stack.api}/api/queue/operations", json=body, timeout=10).status_code == 401
