"""KumoMTA's admin API (`/api/admin/*/v1`) on ingest: KumoMTA's field names, mapped onto the queue controls (the
same QueueCommand as /api/admin/suspend and /api/admin/bounce) and audited like them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from mailstream.events import fixtures
from mailstream.events.records import AuditRecord, QueueCommand, QueueStats, QueueSuspension
from mailstream.events.topics import AUDIT, QUEUE_COMMANDS
from mailstream.scheduler.holds import RULE_OF
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, T0, IngestApp, problem


def commands(ingest: IngestApp) -> list[QueueCommand]:
    """Each command once (a command naming no tenant is written to every partition)."""
    return list({cmd.id: cmd for _, cmd in ingest.written(QUEUE_COMMANDS, QueueCommand)}.values())


def audited(ingest: IngestApp) -> list[AuditRecord]:
    return [entry for _, entry in ingest.written(AUDIT, AuditRecord)]


def publish(ingest: IngestApp) -> None:
    """What stage 1 publishes once it has applied the commands written: their controls, on two partitions."""
    controls = tuple(
        QueueSuspension(
            id=c.id,
            queue=c.queue,
            tenant=c.tenant,
            campaign=c.campaign,
            domain=c.domain,
            reason=c.reason,
            since=c.issued_at,
            until=c.until,
            issued_by=c.issued_by,
            state=RULE_OF[c.action],
        )
        for c in commands(ingest)
        if c.action != "resume"
    )
    for partition in (0, 1):
        ingest.publish_stats(QueueStats(partition=partition, suspensions=controls, as_of=T0))


async def test_suspend_v1_is_the_suspend_command_with_kumomtas_fields(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    response = await admin.post(
        "/api/admin/suspend/v1", json={"domain": "example.com", "reason": "blocklisted", "duration": "2h"}
    )
    assert response.status_code == 200, response.text
    [cmd] = commands(ingest)
    assert response.json() == {"id": str(uuid.UUID(cmd.id))}
    assert (cmd.action, cmd.domain, cmd.reason, cmd.until) == (
        "suspend",
        "example.com",
        "blocklisted",
        T0 + timedelta(hours=2),
    )
    [entry] = audited(ingest)
    assert (entry.operation, entry.route, entry.result, entry.command_ids) == (
        "suspend",
        "POST /api/admin/suspend/v1",
        "accepted",
        (cmd.id,),
    )
    assert ingest.transactions.transactions == 1


async def test_suspend_v1_lists_and_deletes_by_id(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    await admin.post(
        "/api/admin/suspend/v1", json={"tenant": "acme", "campaign": "spring", "reason": "r", "duration": 90}
    )
    ingest.clock.advance(timedelta(seconds=1))  # listed oldest first
    ident = (await admin.post("/api/admin/suspend/v1", json={"domain": "example.com", "reason": "bl"})).json()["id"]
    publish(ingest)
    ingest.clock.advance(timedelta(seconds=30))
    listing = await admin.get("/api/admin/suspend/v1")
    assert listing.status_code == 200
    assert [(e["tenant"], e["campaign"], e["domain"], e["reason"], e["duration"]) for e in listing.json()] == [
        ("acme", "spring", None, "r", "59s"),
        (None, None, "example.com", "bl", None),  # until deleted
    ]
    assert set(listing.json()[0]) == {"id", "domain", "campaign", "tenant", "queue", "reason", "duration"}
    deleted = await admin.request("DELETE", "/api/admin/suspend/v1", json={"id": ident})
    assert deleted.status_code == 200, deleted.text
    resume = commands(ingest)[-1]
    assert (resume.action, resume.domain, resume.tenant) == ("resume", "example.com", None)
    assert audited(ingest)[-1].operation == "resume"
    assert audited(ingest)[-1].parameters == {"id": ident}
    missing = await admin.request("DELETE", "/api/admin/suspend/v1", json={"id": str(uuid.uuid4())})
    problem(missing, 404)
    assert (audited(ingest)[-1].result, audited(ingest)[-1].status) == ("refused", 404)


async def test_a_tenant_lists_its_own_suspensions_and_may_not_lift_an_admins(ingest: IngestApp) -> None:
    async with ingest.client() as admin, ingest.client(ACME_KEY) as acme, ingest.client(GLOBEX_KEY) as globex:
        ident = (await admin.post("/api/admin/suspend/v1", json={"tenant": "acme", "reason": "abuse"})).json()["id"]
        await globex.post("/api/admin/suspend/v1", json={"tenant": "globex", "reason": "own"})
        publish(ingest)
        assert [e["tenant"] for e in (await acme.get("/api/admin/suspend/v1")).json()] == ["acme"]
        problem(await acme.request("DELETE", "/api/admin/suspend/v1", json={"id": ident}), 403)
    assert [(a.actor_tenant, a.result) for a in audited(ingest)] == [
        (None, "accepted"),
        ("globex", "accepted"),
        ("acme", "refused"),
    ]


async def test_bounce_v1_answers_kumomtas_shape_and_lists_the_rule(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/admin/bounce/v1", json={"campaign": "spring", "tenant": "acme", "reason": "oops"})
    assert response.status_code == 200, response.text
    [cmd] = commands(ingest)
    assert response.json() == {"id": str(uuid.UUID(cmd.id)), "bounced": {}, "total_bounced": 0}
    assert (cmd.action, cmd.until) == ("cancel", T0 + timedelta(minutes=5))  # KumoMTA's default duration
    publish(ingest)
    [entry] = (await admin.get("/api/admin/bounce/v1")).json()
    assert entry == {
        "id": response.json()["id"],
        "campaign": "spring",
        "tenant": "acme",
        "domain": None,
        "queue": None,
        "routing_domain": None,
        "reason": "oops",
        "duration": "5m",
        "bounced": {},
        "total_bounced": 0,
    }
    assert (await admin.get("/api/admin/suspend/v1")).json() == []  # a bounce rule is not a suspension
    assert audited(ingest)[0].operation == "bounce"


async def test_queue_names_override_the_scope_one_command_each_in_one_transaction(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    names = ["spring:acme@example.com", "globex@example.net"]
    expires = (T0 + timedelta(hours=1)).isoformat()
    response = await admin.post(
        "/api/admin/suspend/v1",
        json={"queue_names": names, "domain": "ignored.test", "reason": "r", "expires": expires},
    )
    assert response.status_code == 200, response.text
    assert [(c.queue, c.domain, c.until) for c in commands(ingest)] == [
        (n, None, T0 + timedelta(hours=1)) for n in names
    ]
    assert ingest.transactions.transactions == 1
    [entry] = audited(ingest)
    assert len(entry.command_ids) == 2


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/admin/suspend/v1", {"domain": "example.com"}),  # reason is required
        ("/api/admin/suspend/v1", {"reason": "everything"}),  # no criteria: mailstream does not suspend all
        (
            "/api/admin/suspend/v1",
            {"domain": "x.test", "reason": "r", "duration": "1h", "expires": "2100-01-01T00:00:00Z"},
        ),
        ("/api/admin/suspend/v1", {"domain": "x.test", "reason": "r", "expires": "2000-01-01T00:00:00Z"}),
        ("/api/admin/bounce/v1", {"domain": "x.test", "reason": "r", "routing_domain": "r.test"}),
        ("/api/admin/bounce/v1", {"domain": "x.test", "reason": "r", "suppress_logging": True}),
        ("/api/admin/bounce/v1", {"domain": "x.test", "reason": "r", "unknown": 1}),
    ],
)
async def test_what_mailstream_cannot_do_is_refused_and_audited(
    ingest: IngestApp, admin: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    problem(await admin.post(path, json=body), 422)
    assert commands(ingest) == []
    [entry] = audited(ingest)
    assert (entry.result, entry.status) == ("refused", 422)


async def test_delete_v1_needs_a_uuid(admin: httpx.AsyncClient) -> None:
    problem(await admin.request("DELETE", "/api/admin/suspend/v1", json={"id": "not-a-uuid"}), 422)
    problem(await admin.request("DELETE", "/api/admin/suspend/v1"), 400)


async def test_inspect_message_v1_answers_from_the_transaction_status(ingest: IngestApp) -> None:
    status = fixtures.status().model_copy(
        update={"status": "deferred", "num_attempts": 2, "next_attempt_at": T0 + timedelta(minutes=20)}
    )
    await ingest.publish_status(status)
    async with ingest.client(ACME_KEY) as acme, ingest.client(GLOBEX_KEY) as globex:
        response = await acme.get("/api/admin/inspect-message/v1", params={"id": status.id, "want_body": "true"})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": status.id,
            "message": {
                "sender": status.sender,
                "recipient": status.recipient,
                "meta": {
                    "queue": status.queue,
                    "status": "deferred",
                    "message_id": status.message_id,
                    "tenant": "acme",
                    "campaign": "spring",
                },
                "due": (T0 + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
                "num_attempts": 2,
                "scheduling": None,
            },
        }
        problem(await globex.get("/api/admin/inspect-message/v1", params={"id": status.id}), 404)
        problem(await acme.get("/api/admin/inspect-message/v1"), 422)
