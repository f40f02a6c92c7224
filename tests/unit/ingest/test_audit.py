"""The audit trail: every operator route writes an AuditRecord on mail.audit (in the transaction of the records it
writes; a refusal on its own), and GET /api/admin/audit reads the replica's projection of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import Request

from mailstream.events import fixtures
from mailstream.events.records import AuditRecord, QueueCommand
from mailstream.events.topics import AUDIT, QUEUE_COMMANDS
from mailstream.ingest.audit_view import AuditView
from mailstream.ingest.auth import Principal, key_id
from mailstream.ingest.problems import Problem
from mailstream.ingest.suppression_api import suppression_router
from mailstream.ingest.webhook_api import webhook_router
from mailstream.ingest.webhook_view import WebhookView
from mailstream.intake.suppression_view import SuppressionView
from tests.infra.ingest_app import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, T0, IngestApp, problem


def audited(ingest: IngestApp) -> list[AuditRecord]:
    return [entry for _, entry in ingest.written(AUDIT, AuditRecord)]


def key_of(ingest: IngestApp, n: int) -> str:
    return key_id(ingest.config.ingest.api_keys[n])  # 0 admin, 1 acme, 2 globex


async def test_a_suspension_and_its_audit_record_are_one_transaction(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    response = await admin.post(
        "/api/admin/suspend",
        json={"domain": "example.com", "reason": "blocklisted", "duration": "2h"},
        headers={"X-Request-Id": "req-42"},
    )
    assert response.status_code == 202, response.text
    assert ingest.transactions.transactions == 1  # a command on every partition and the audit record, together
    commands = {cmd.id for _, cmd in ingest.written(QUEUE_COMMANDS, QueueCommand)}
    [entry] = audited(ingest)
    assert entry.command_ids == tuple(commands) == (response.json()["id"],)
    assert entry.actor == key_of(ingest, 0)
    assert entry.admin
    assert entry.actor_tenant is None
    assert ADMIN_KEY not in entry.model_dump_json()  # the key's id, never the key
    assert (entry.operation, entry.route, entry.result, entry.status) == (
        "suspend",
        "POST /api/admin/suspend",
        "accepted",
        202,
    )
    assert entry.scope == {"domain": "example.com"}
    assert entry.reason == "blocklisted"
    assert entry.parameters == {"duration": "7200s", "until": (T0 + timedelta(hours=2)).isoformat()}
    assert (entry.at, entry.request_id) == (T0, "req-42")


async def test_an_aborted_transaction_writes_neither_the_command_nor_its_audit_record(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    ingest.transactions.fail_next = 1
    problem(await admin.post("/api/admin/suspend", json={"tenant": "acme"}), 503)
    assert ingest.producer.records(QUEUE_COMMANDS) == []
    assert audited(ingest) == []


async def test_a_refused_request_is_audited_as_refused_with_its_problem(ingest: IngestApp) -> None:
    async with ingest.client(ACME_KEY) as acme:
        problem(await acme.post("/api/admin/suspend", json={"tenant": "globex"}), 403)
        problem(await acme.post("/api/admin/bounce", json={"tenant": "acme"}), 422)  # bounce needs a reason
    assert ingest.producer.records(QUEUE_COMMANDS) == []
    forbidden, invalid = audited(ingest)
    assert (forbidden.operation, forbidden.result, forbidden.status) == ("suspend", "refused", 403)
    assert forbidden.actor == key_of(ingest, 1)
    assert forbidden.actor_tenant == "acme"
    assert forbidden.scope == {}  # an entry about acme's own try, not about globex
    assert "not the tenant" in (forbidden.problem or "")
    assert (invalid.operation, invalid.result, invalid.status, invalid.affected) == ("bounce", "refused", 422, 0)


async def test_a_request_without_a_known_key_is_not_audited(ingest: IngestApp) -> None:
    async with ingest.client(None) as anonymous, ingest.client("not-a-key") as stranger:
        problem(await anonymous.post("/api/admin/suspend", json={"tenant": "acme"}), 401)
        problem(await stranger.delete("/api/admin/suspend", params={"tenant": "acme"}), 401)
    assert audited(ingest) == []  # else anyone could fill the trail


@pytest.mark.parametrize(
    ("method", "path", "body", "operation", "parameters"),
    [
        ("DELETE", "/api/admin/suspend", {"tenant": "acme"}, "resume", {}),
        ("POST", "/api/admin/queue-state", {"tenant": "acme", "state": "draining"}, "drain", {"state": "draining"}),
        ("POST", "/api/admin/bounce", {"tenant": "acme", "reason": "oops"}, "bounce", None),
    ],
)
async def test_each_queue_control_is_audited_with_its_operation(
    ingest: IngestApp,
    admin: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any],
    operation: str,
    parameters: dict[str, str] | None,
) -> None:
    assert (await admin.request(method, path, json=body)).status_code == 202
    [entry] = audited(ingest)
    assert (entry.operation, entry.route, entry.result, entry.scope["tenant"]) == (
        operation,
        f"{method} {path}",
        "accepted",
        "acme",
    )
    if parameters is not None:
        assert entry.parameters == parameters
    else:  # a bounce rule lasts KumoMTA's default 5 minutes
        assert entry.parameters["duration"] == "300s"


async def test_cancelling_a_transaction_is_audited_with_the_message_and_what_it_did(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    live = fixtures.status().model_copy(update={"id": "tx-live", "tenant": "acme", "status": "scheduled"})
    done = fixtures.status().model_copy(update={"id": "tx-done", "tenant": "acme", "status": "delivered"})
    await ingest.publish_status(live)
    await ingest.publish_status(done)
    assert (await admin.post("/api/transactions/tx-live/cancel", json={"reason": "typo"})).status_code == 200
    assert (await admin.post("/api/transactions/tx-done/cancel")).status_code == 200
    problem(await admin.post("/api/transactions/tx-none/cancel"), 404)
    cancelled, finished, missing = audited(ingest)
    assert (cancelled.scope["message"], cancelled.affected, cancelled.reason) == ("tx-live", 1, "typo")
    assert len(cancelled.command_ids) == 1
    assert (finished.scope["message"], finished.affected, finished.command_ids) == ("tx-done", 0, ())
    assert (missing.result, missing.status, missing.scope) == ("refused", 404, {"message": "tx-none"})


async def test_suppression_and_webhook_changes_are_audited(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    suppressions = SuppressionView()
    ingest.app.include_router(
        suppression_router(ingest.config, suppressions, ingest.producer, ingest.clock, ingest.auditor)
    )
    ingest.app.include_router(
        webhook_router(ingest.config, WebhookView(5), ingest.producer, ingest.clock, ingest.auditor)
    )
    added = await admin.post(
        "/api/suppressions", json={"tenant": "acme", "entries": [{"address": "a@x.test"}, {"address": "b@x.test"}]}
    )
    assert added.status_code == 202, added.text
    created = await admin.post("/api/webhooks", json={"name": "n", "url": "https://h.test/x", "events": ["bounced"]})
    assert created.status_code == 201, created.text
    assert (await admin.delete(f"/api/webhooks/{created.json()['id']}")).status_code == 204
    suppression, webhook, deleted = audited(ingest)
    assert (suppression.operation, suppression.affected) == ("suppression.add", 2)
    assert suppression.scope == {"tenant": "acme", "address": "a@x.test,b@x.test"}
    assert (webhook.operation, webhook.scope["endpoint"]) == ("webhook.create", created.json()["id"])
    assert created.json()["secret"] not in webhook.model_dump_json()
    assert (deleted.operation, deleted.status, deleted.scope["endpoint"]) == (
        "webhook.delete",
        204,
        created.json()["id"],
    )
    assert ingest.transactions.transactions == 3  # each change with its audit record


async def actions(ingest: IngestApp) -> None:
    """An admin's suspension of acme, a domain-wide one, acme's own drain, globex's refused bounce, an hour apart."""
    async with ingest.client() as admin, ingest.client(ACME_KEY) as acme, ingest.client(GLOBEX_KEY) as globex:
        await admin.post("/api/admin/suspend", json={"tenant": "acme", "reason": "complaints"})
        ingest.clock.advance(timedelta(hours=1))
        await admin.post("/api/admin/suspend", json={"domain": "example.com"})
        ingest.clock.advance(timedelta(hours=1))
        await acme.post("/api/admin/queue-state", json={"campaign": "spring", "state": "draining"})
        ingest.clock.advance(timedelta(hours=1))
        await globex.post("/api/admin/bounce", json={"tenant": "acme", "reason": "x"})


def operations(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [f"{e['operation']}:{e['result']}" for e in response.json()["data"]]


async def test_the_audit_query_filters_newest_first(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    await actions(ingest)
    every = ["bounce:refused", "drain:accepted", "suspend:accepted", "suspend:accepted"]
    assert operations(await admin.get("/api/admin/audit")) == every
    assert operations(await admin.get("/api/admin/audit", params={"operation": "suspend"})) == every[2:]
    assert operations(await admin.get("/api/admin/audit", params={"result": "refused"})) == every[:1]
    assert operations(await admin.get("/api/admin/audit", params={"actor": "globex"})) == every[:1]
    assert operations(await admin.get("/api/admin/audit", params={"actor": key_of(ingest, 1)})) == every[1:2]
    assert operations(await admin.get("/api/admin/audit", params={"scope": "example.com"})) == every[3:4]
    since, until = (T0 + timedelta(hours=1)).isoformat(), (T0 + timedelta(hours=3)).isoformat()
    assert operations(await admin.get("/api/admin/audit", params={"since": since, "until": until})) == every[1:3]
    assert operations(await admin.get("/api/admin/audit", params={"tenant": "acme"})) == [every[1], every[3]]
    assert operations(await admin.get("/api/admin/audit", params={"tenant": "globex"})) == every[:1]


async def test_the_audit_query_pages_with_a_cursor(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    await actions(ingest)
    first = await admin.get("/api/admin/audit", params={"limit": 3})
    assert len(first.json()["data"]) == 3
    rest = await admin.get("/api/admin/audit", params={"limit": 3, "cursor": first.json()["next_cursor"]})
    assert operations(rest) == ["suspend:accepted"]
    assert rest.json()["next_cursor"] is None
    ids = [e["id"] for e in first.json()["data"] + rest.json()["data"]]
    assert ids == [e.id for e in reversed(audited(ingest))]


async def test_a_tenant_reads_only_the_entries_about_its_tenant(ingest: IngestApp) -> None:
    await actions(ingest)
    async with ingest.client(ACME_KEY) as acme, ingest.client(GLOBEX_KEY) as globex:
        # its own drain, the admin's suspension of its queues; not globex's refused try on its queues
        assert operations(await acme.get("/api/admin/audit")) == ["drain:accepted", "suspend:accepted"]
        assert operations(await globex.get("/api/admin/audit")) == ["bounce:refused"]  # its own try only
        problem(await acme.get("/api/admin/audit", params={"tenant": "globex"}), 403)


@pytest.mark.parametrize(
    "params",
    [{"since": "2026-11-23T10:00:00"}, {"cursor": "abc"}, {"limit": "0"}, {"result": "maybe"}, {"since": "x"}],
)
async def test_a_bad_audit_query_is_a_422_problem(admin: httpx.AsyncClient, params: dict[str, str]) -> None:
    problem(await admin.get("/api/admin/audit", params=params), 422)


async def test_the_projection_reads_the_topic_and_skips_its_own_writes(ingest: IngestApp) -> None:
    await actions(ingest)
    fresh = AuditView()
    for record in ingest.producer.records(AUDIT) * 2:  # read twice: each entry kept once
        fresh.apply(record.value)
        ingest.audit.apply(record.value)
    bounded = AuditView(kept=2)
    for record in ingest.producer.records(AUDIT):
        bounded.apply(record.value)
    root = Principal(None, True, key_of(ingest, 0))
    assert [e.id for e in fresh.page(root)[0]] == [e.id for e in ingest.audit.page(root)[0]]
    assert len(ingest.audit.page(root)[0]) == 4
    assert [e.operation for e in bounded.page(root)[0]] == ["bounce", "drain"]  # the newest `kept`


NAMING_GLOBEX = [  # every audited route where a tenant key can name a tenant
    ("POST", "/api/admin/suspend", {"tenant": "globex"}, None),
    ("DELETE", "/api/admin/suspend", None, {"tenant": "globex"}),
    ("POST", "/api/admin/queue-state", {"tenant": "globex", "state": "draining"}, None),
    ("POST", "/api/admin/bounce", {"tenant": "globex", "reason": "x"}, None),
    ("POST", "/api/admin/suspend/v1", {"tenant": "globex", "reason": "x", "duration": "1h"}, None),
    ("POST", "/api/admin/bounce/v1", {"tenant": "globex", "reason": "x"}, None),
    ("POST", "/api/suppressions", {"tenant": "globex", "entries": [{"address": "a@x.test"}]}, None),
    ("DELETE", "/api/suppressions/a@x.test", None, {"tenant": "globex"}),
    ("POST", "/api/webhooks", {"tenant": "globex", "name": "n", "url": "https://h.test/", "events": ["bounced"]}, None),
]


@pytest.mark.parametrize(("method", "path", "body", "params"), NAMING_GLOBEX)
async def test_a_tenant_naming_another_is_refused_and_audited_as_its_own_try_only(
    ingest: IngestApp, method: str, path: str, body: dict[str, Any] | None, params: dict[str, str] | None
) -> None:
    suppressions = SuppressionView()
    suppressions.caught_up.set()
    ingest.app.include_router(
        suppression_router(ingest.config, suppressions, ingest.producer, ingest.clock, ingest.auditor)
    )
    ingest.app.include_router(
        webhook_router(ingest.config, WebhookView(5), ingest.producer, ingest.clock, ingest.auditor)
    )
    async with ingest.client(ACME_KEY) as acme, ingest.client(GLOBEX_KEY) as globex:
        refused = problem(await acme.request(method, path, json=body, params=params), 403)
        # one check for every route: the same problem wherever another tenant is named
        assert refused["detail"] == "tenant: 'globex' is not the tenant of this API key"
        assert refused["errors"] == [{"field": "tenant", "message": "not the tenant of this API key"}]
        [entry] = audited(ingest)
        assert (entry.result, entry.status, entry.actor_tenant) == ("refused", 403, "acme")
        assert "globex" not in entry.scope.values()
        assert operations(await globex.get("/api/admin/audit")) == []  # nothing planted in globex's trail
        assert operations(await acme.get("/api/admin/audit")) == [f"{entry.operation}:refused"]
    async with ingest.client() as admin:
        assert operations(await admin.get("/api/admin/audit", params={"tenant": "globex"})) == []
        assert operations(await admin.get("/api/admin/audit", params={"scope": "globex"})) == []


async def test_an_entry_of_a_tenant_key_never_names_another_tenant_whatever_the_route_noted(
    ingest: IngestApp,
) -> None:
    """The auditor's own guard, for a route that notes the scope before checking rights."""

    @ingest.app.post("/careless")
    async def careless(request: Request) -> None:
        async with ingest.auditor.action(request, "careless") as act:
            act.who = Principal("acme", False, key_of(ingest, 1))
            act.name(tenant="globex", domain="example.com")
            raise Problem(403, "Forbidden", "no")

    async with ingest.client(ACME_KEY) as acme:
        problem(await acme.post("/careless"), 403)
    [entry] = audited(ingest)
    assert entry.scope == {"domain": "example.com"}
