"""The admin API: suspend/resume, queue-state, bounce, single cancel and the suspensions in force. Each operation is a
QueueCommand on mail.queue-commands, read here from the in-memory producer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from mailstream.core.partitioner import partition_of
from mailstream.events import fixtures
from mailstream.events.records import ADMIN_ISSUER, QueueCommand, QueueStats
from mailstream.events.topics import QUEUE_COMMANDS
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, T0, IngestApp, problem


def commands(ingest: IngestApp) -> list[tuple[str, int, QueueCommand]]:
    """(key, partition, command) of every command written."""
    return [
        (key, record.partition, cmd)
        for (key, cmd), record in zip(
            ingest.written(QUEUE_COMMANDS, QueueCommand), ingest.producer.records(QUEUE_COMMANDS), strict=True
        )
    ]


def admin_control(**scope: Any) -> QueueStats:
    """The published state of a partition showing an admin's control on `scope`."""
    control = fixtures.suspension().model_copy(
        update={"tenant": None, "campaign": None, "since": T0, "until": None, "issued_by": ADMIN_ISSUER, **scope}
    )
    return QueueStats(partition=1, tenant=scope.get("tenant"), suspensions=(control,), as_of=T0)


async def test_suspend_writes_one_command_beside_the_tenants_queues(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    response = await admin.post(
        "/api/admin/suspend", json={"tenant": "acme", "campaign": "spring", "reason": "complaints", "duration": "2h"}
    )
    assert response.status_code == 202, response.text
    [(key, partition, cmd)] = commands(ingest)
    assert key == "tenant:acme"
    assert partition == partition_of(key.encode(), QUEUE_COMMANDS.partitions)
    assert (cmd.action, cmd.tenant, cmd.campaign, cmd.queue, cmd.domain) == ("suspend", "acme", "spring", None, None)
    assert (cmd.reason, cmd.until, cmd.issued_at, cmd.issued_by) == (
        "complaints",
        T0 + timedelta(hours=2),
        T0,
        ADMIN_ISSUER,
    )
    assert response.json() == {
        "id": cmd.id,
        "operation": "suspend",
        "scope": {"tenant": "acme", "campaign": "spring"},
        "reason": "complaints",
        "until": (T0 + timedelta(hours=2)).isoformat(),
        "timestamp": T0.isoformat(),
    }


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        ({"domain": "example.com", "duration": None}, "queue:*"),
        ({"queue": "spring:acme@example.com"}, "queue:spring:acme@example.com"),
    ],
)
async def test_a_command_naming_no_tenant_goes_to_every_partition(
    ingest: IngestApp, admin: httpx.AsyncClient, scope: dict[str, str | None], key: str
) -> None:
    assert (await admin.post("/api/admin/suspend", json=scope)).status_code == 202
    written = commands(ingest)
    assert [p for _, p, _ in written] == list(range(QUEUE_COMMANDS.partitions))
    assert {k.rpartition("#")[0] for k, _, _ in written} == {key}  # a key landing on each partition (one transaction)
    assert len({cmd.id for _, _, cmd in written}) == 1  # one command, told to each partition
    assert written[0][2].until is None  # no duration: until resumed


@pytest.mark.parametrize("how", ["query", "body"])
async def test_resume_is_delete_with_the_scope_fields(ingest: IngestApp, admin: httpx.AsyncClient, how: str) -> None:
    if how == "query":
        response = await admin.delete("/api/admin/suspend", params={"tenant": "acme"})
    else:
        response = await admin.request("DELETE", "/api/admin/suspend", json={"tenant": "acme"})
    assert response.status_code == 202, response.text
    [(_, _, cmd)] = commands(ingest)
    assert (cmd.action, cmd.tenant, cmd.reason, cmd.until) == ("resume", "acme", None, None)
    assert response.json()["operation"] == "resume"


async def test_resume_takes_only_the_scope(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    body = problem(await admin.request("DELETE", "/api/admin/suspend", json={"tenant": "acme", "reason": "r"}), 422)
    assert [e["field"] for e in body["errors"]] == ["reason"]
    assert commands(ingest) == []


async def test_post_suspend_reads_the_query_when_there_is_no_body(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    assert (await admin.post("/api/admin/suspend?tenant=acme&reason=later")).status_code == 202
    [(_, _, cmd)] = commands(ingest)
    assert (cmd.tenant, cmd.reason) == ("acme", "later")


@pytest.mark.parametrize(
    ("state", "action"),
    [("active", "resume"), ("suspended", "suspend"), ("draining", "drain"), ("disabled", "disable")],
)
async def test_queue_state_sets_each_state(
    ingest: IngestApp, admin: httpx.AsyncClient, state: str, action: str
) -> None:
    response = await admin.post(
        "/api/admin/queue-state", json={"tenant": "acme", "state": state, "reason": "r", "duration": 60}
    )
    assert response.status_code == 202, response.text
    [(_, _, cmd)] = commands(ingest)
    assert cmd.action == action
    if action == "resume":  # making a scope active ends a state: it has neither reason nor end
        assert (cmd.reason, cmd.until) == (None, None)
    else:
        assert (cmd.reason, cmd.until) == ("r", T0 + timedelta(seconds=60))


async def test_bounce_cancels_for_five_minutes_unless_told_otherwise(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    await admin.post("/api/admin/bounce", json={"campaign": "spring", "tenant": "acme", "reason": "wrong list"})
    await admin.post("/api/admin/bounce", json={"tenant": "acme", "reason": "stop", "duration": "1 hour"})
    first, second = (cmd for _, _, cmd in commands(ingest))
    assert (first.action, first.reason, first.until) == ("cancel", "wrong list", T0 + timedelta(minutes=5))
    assert second.until == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/admin/suspend", {}, "(body)"),
        ("/api/admin/suspend", {"reason": "no scope"}, "(body)"),
        ("/api/admin/suspend", {"tenant": "acme", "duration": "soon"}, "duration"),
        ("/api/admin/suspend", {"tenant": "acme", "duration": "-5m"}, "duration"),
        ("/api/admin/suspend", {"tenant": "acme", "duration": 0}, "duration"),
        ("/api/admin/suspend", {"tenant": "acme", "duration": True}, "duration"),
        ("/api/admin/suspend", {"tenant": "acme", "duration": ["1h"]}, "duration"),
        ("/api/admin/suspend", {"tenant": ""}, "tenant"),
        ("/api/admin/suspend", {"tenant": "acme", "color": "red"}, "color"),
        ("/api/admin/suspend", {"tenant": "acme", "reason": "x" * 501}, "reason"),
        ("/api/admin/bounce", {"reason": "no scope"}, "(body)"),
        ("/api/admin/queue-state", {"tenant": "acme"}, "state"),
        ("/api/admin/queue-state", {"tenant": "acme", "state": "paused"}, "state"),
        ("/api/admin/bounce", {"tenant": "acme"}, "reason"),
        ("/api/admin/bounce", {"tenant": "acme", "reason": ""}, "reason"),
    ],
)
async def test_an_invalid_command_is_422_naming_the_field(
    ingest: IngestApp, admin: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    problem_body = problem(await admin.post(path, json=body), 422)
    assert [e["field"] for e in problem_body["errors"]] == [field], problem_body
    assert commands(ingest) == []


@pytest.mark.parametrize(
    "path", ["/api/admin/suspend", "/api/admin/queue-state", "/api/admin/bounce", "/api/transactions/tx-1/cancel"]
)
async def test_a_command_body_past_16_kib_is_413(ingest: IngestApp, admin: httpx.AsyncClient, path: str) -> None:
    body = problem(await admin.post(path, json={"tenant": "acme", "reason": "x" * 17_000}), 413)
    assert body["detail"] == f"request body exceeds {16 * 1024} bytes"


async def test_a_tenant_key_acts_on_its_own_queues_only(ingest: IngestApp) -> None:
    async with ingest.client(ACME_KEY) as acme:
        own = await acme.post("/api/admin/suspend", json={"campaign": "spring", "reason": "pause"})
        named = await acme.post("/api/admin/queue-state", json={"tenant": "acme", "state": "draining"})
        other = await acme.post("/api/admin/suspend", json={"tenant": "globex"})
        unnamed = await acme.delete("/api/admin/suspend")  # its tenant is filled in only once a scope is named
    assert own.json()["scope"] == {"tenant": "acme", "campaign": "spring"}  # the key's tenant, whatever was sent
    assert named.status_code == 202
    body = problem(other, 403)
    assert body["detail"] == "tenant: 'globex' is not the tenant of this API key"
    assert problem(unnamed, 422)["errors"][0]["field"] == "(body)"
    assert [(cmd.tenant, cmd.issued_by) for _, _, cmd in commands(ingest)] == [("acme", "tenant:acme")] * 2


async def test_a_tenant_key_cannot_change_what_an_admin_set(ingest: IngestApp) -> None:
    ingest.publish_stats(admin_control(tenant="acme"))
    async with ingest.client(ACME_KEY) as acme:
        lift = await acme.delete("/api/admin/suspend", params={"tenant": "acme"})
        rewrite = await acme.post("/api/admin/queue-state", json={"tenant": "acme", "state": "draining"})
        narrower = await acme.post("/api/admin/suspend", json={"campaign": "spring"})  # another scope: its own
        bounce = await acme.post("/api/admin/bounce", json={"tenant": "acme", "reason": "mine"})  # bounces apart
    for response in (lift, rewrite):
        assert problem(response, 403)["detail"] == "an admin set this control: only an admin may change it"
    assert (narrower.status_code, bounce.status_code) == (202, 202)
    async with ingest.client() as admin:
        assert (await admin.delete("/api/admin/suspend", params={"tenant": "acme"})).status_code == 202


async def test_a_tenant_key_cannot_lift_an_admins_bounce(ingest: IngestApp) -> None:
    ingest.publish_stats(admin_control(tenant="acme", state="bounce"))
    async with ingest.client(ACME_KEY) as acme:
        response = await acme.post("/api/admin/bounce", json={"tenant": "acme", "reason": "shorter", "duration": "1m"})
    problem(response, 403)


async def test_cancel_asks_stage_1_to_cancel_one_unfinished_transaction(ingest: IngestApp) -> None:
    scheduled = fixtures.status().model_copy(update={"version": 1, "status": "scheduled", "attempts": ()})
    await ingest.publish_status(scheduled)
    async with ingest.client(ACME_KEY) as acme:
        plain = await acme.post("/api/transactions/tx-1/cancel")
        reasoned = await acme.post("/api/transactions/tx-1/cancel", json={"reason": "unsubscribed"})
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"name": "transactions/tx-1", "cancel_requested": True, "status": "scheduled", "done": False}
    written = commands(ingest)
    assert [(key, cmd.action, cmd.transaction_id, cmd.queue) for key, _, cmd in written] == [
        ("tenant:acme", "cancel", "tx-1", "spring:acme@example.com")
    ] * 2
    assert [cmd.reason for _, _, cmd in written] == [None, "unsubscribed"]
    assert written[0][2].issued_by == "tenant:acme"
    assert reasoned.json()["cancel_requested"] is True


async def test_cancelling_a_finished_transaction_changes_nothing(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    await ingest.publish_status(fixtures.status())  # delivered
    response = await admin.post("/api/transactions/tx-1/cancel")
    assert response.json() == {
        "name": "transactions/tx-1",
        "cancel_requested": False,
        "status": "delivered",
        "done": True,
    }
    assert commands(ingest) == []


async def test_cancel_refuses_an_unknown_transaction_or_a_bad_body(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    await ingest.publish_status(fixtures.status())
    problem(await admin.post("/api/transactions/nope/cancel"), 404)
    assert (
        problem(await admin.post("/api/transactions/tx-1/cancel", json={"why": "x"}), 422)["errors"][0]["field"]
        == "why"
    )
    assert problem(await admin.post("/api/transactions/tx-1/cancel", content=b"{"), 400)["title"] == "Malformed JSON"


async def test_suspensions_lists_the_controls_in_force(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    ingest.publish_stats(admin_control(tenant="acme", id="a1", reason="acme's"))
    ingest.publish_stats(admin_control(tenant="globex", id="g1", state="bounce", since=T0 - timedelta(hours=1)))
    everyone = (await admin.get("/api/admin/suspensions")).json()["data"]
    assert [(s["id"], s["state"]) for s in everyone] == [("g1", "bounce"), ("a1", "suspended")]  # oldest first
    assert everyone[1]["reason"] == "acme's"
    one = (await admin.get("/api/admin/suspensions", params={"tenant": "globex"})).json()["data"]
    assert [s["id"] for s in one] == ["g1"]
    async with ingest.client(GLOBEX_KEY) as globex:
        own = (await globex.get("/api/admin/suspensions")).json()["data"]
    assert [s["id"] for s in own] == ["g1"]
