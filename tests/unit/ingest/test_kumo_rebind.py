"""KumoMTA's POST /api/admin/rebind/v1 on ingest: its RebindV1Request mapped onto the rebind QueueOperation (the
one POST /api/queue/operations writes), kumod's `{}` answer, audited like the other routes, a tenant's key kept to
its own queues, and what has no meaning here refused with a 422 problem."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from mailstream.events.records import AuditRecord, QueueOperation
from mailstream.events.topics import AUDIT, QUEUE_COMMANDS
from mailstream.ingest.kumo_rebind import RebindV1Request, rebind_operation
from mailstream.ingest.problems import Problem
from tests.infra.ingest_app import ACME_KEY, T0, IngestApp, problem

PATH = "/api/admin/rebind/v1"


def operations(ingest: IngestApp) -> list[QueueOperation]:
    """Each operation once (one naming no tenant is written to every partition)."""
    return list({op.id: op for _, op in ingest.written(QUEUE_COMMANDS, QueueOperation)}.values())


def audited(ingest: IngestApp) -> list[AuditRecord]:
    return [entry for _, entry in ingest.written(AUDIT, AuditRecord)]


def request(**fields: Any) -> RebindV1Request:
    return RebindV1Request.model_validate({"reason": "r", **fields})


def test_data_maps_onto_the_operations_queue_and_pool() -> None:
    op = rebind_operation(
        request(tenant="acme", campaign="spring", domain="example.com", data={"queue": "warm:acme@example.com"}),
        "acme",
    )
    assert (op.operation, op.tenant, op.campaign, op.domain, op.reason) == (
        "rebind",
        "acme",
        "spring",
        "example.com",
        "r",
    )
    assert (op.metadata.queue, op.metadata.egress_pool) == ("warm:acme@example.com", None)
    pool = rebind_operation(request(tenant="acme", data={"egress_pool": "warm"}), "acme")
    assert (pool.metadata.queue, pool.metadata.egress_pool, pool.campaign) == (None, "warm", None)


def test_a_routing_domain_joins_the_queue_named_or_the_scopes() -> None:
    named = rebind_operation(
        request(tenant="acme", data={"queue": "spring:acme@example.com", "routing_domain": "Relay.Test"}), "acme"
    )
    assert named.metadata.queue == "spring:acme@example.com!relay.test"
    same = rebind_operation(
        request(tenant="acme", data={"queue": "acme@example.com!relay.test", "routing_domain": "relay.test"}), "acme"
    )
    assert same.metadata.queue == "acme@example.com!relay.test"
    # alone: the queue the scope names, with the acting tenant (a tenant key's own when it named none)
    scoped = rebind_operation(
        request(campaign="spring", domain="Example.COM", data={"routing_domain": "r.test"}), "acme"
    )
    assert (scoped.metadata.queue, scoped.tenant) == ("spring:acme@example.com!r.test", None)


@pytest.mark.parametrize(
    ("fields", "tenant", "field"),
    [
        ({"campaign": "spring", "domain": "example.com", "data": {"routing_domain": "r.test"}}, None, "data"),
        ({"tenant": "acme", "domain": "example.com", "data": {"routing_domain": "r.test"}}, "acme", "data"),
        ({"tenant": "acme", "data": {"queue": "acme@example.com!a.test", "routing_domain": "b.test"}}, "acme", "data"),
        ({"tenant": "acme", "data": {"queue": "acme@example.com", "routing_domain": "b!c"}}, "acme", "data"),
        ({"tenant": "acme", "data": {"queue": "spring:example.com", "routing_domain": "r.test"}}, "acme", "data"),
    ],
)
def test_a_routing_domain_that_names_no_queue_is_refused(
    fields: dict[str, Any], tenant: str | None, field: str
) -> None:
    with pytest.raises(Problem) as caught:
        rebind_operation(request(**fields), tenant)
    assert caught.value.status == 422
    assert caught.value.errors[0]["field"].startswith(field)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tenant": "acme", "data": {"tenant": "globex"}}, "sets only queue, routing_domain, egress_pool"),
        ({"tenant": "acme", "data": {}}, "name where to"),
        ({"tenant": "acme", "data": {"queue": " acme@example.com"}}, "without surrounding spaces"),
        ({"tenant": "acme", "data": {"egress_pool": "warm"}, "always_flush": True}, "keeps its due time"),
        ({"tenant": "acme", "data": {"egress_pool": "warm"}, "trigger_rebind_event": True}, "no rebind_message"),
        ({"tenant": "acme", "data": {"egress_pool": "warm"}, "routing_domain": "r.test"}, "routing_domain"),
        ({"data": {"egress_pool": "warm"}}, "does not rebind every queue"),
        ({"tenant": "acme"}, "data"),
        ({"tenant": "acme", "data": {"egress_pool": "warm"}, "queue_names": ["acme@x.test"]}, "queue_names"),
    ],
)
def test_what_has_no_meaning_here_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        request(**fields)


async def test_the_route_writes_the_rebind_operation_answers_kumods_shape_and_is_audited(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    body = {
        "tenant": "acme",
        "campaign": "spring",
        "reason": "to the warm pool",
        "data": {"queue": "warm:acme@example.com", "egress_pool": "globex"},
        "suppress_logging": True,  # honoured: no AdminRebind record is written here at all
        "always_flush": False,
        "trigger_rebind_event": False,
    }
    response = await admin.post(PATH, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {}
    [op] = operations(ingest)
    assert response.headers["location"] == f"/api/queue/operations/{op.id}"
    assert (op.operation, op.tenant, op.campaign, op.domain, op.queue, op.message_ids) == (
        "rebind",
        "acme",
        "spring",
        None,
        None,
        (),
    )
    assert (op.to_queue, op.to_pool, op.reason, op.issued_at, op.issued_by, op.expected) == (
        "warm:acme@example.com",
        "globex",
        "to the warm pool",
        T0,
        "admin",
        1,
    )
    [entry] = audited(ingest)
    assert (entry.operation, entry.route, entry.result, entry.status, entry.command_ids) == (
        "rebind",
        "POST /api/admin/rebind/v1",
        "accepted",
        200,
        (op.id,),
    )
    assert (entry.scope, entry.reason) == ({"tenant": "acme", "campaign": "spring"}, "to the warm pool")
    assert entry.parameters == {"to_queue": "warm:acme@example.com", "to_pool": "globex"}
    assert ingest.transactions.transactions == 1  # the operation and its audit record together


async def test_an_admins_domain_scope_goes_to_every_partition(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    response = await admin.post(PATH, json={"domain": "example.com", "reason": "r", "data": {"egress_pool": "shared"}})
    assert response.status_code == 200, response.text
    written = ingest.written(QUEUE_COMMANDS, QueueOperation)
    assert len(written) == QUEUE_COMMANDS.partitions
    assert {op.expected for _, op in written} == {QUEUE_COMMANDS.partitions}
    assert {op.tenant for _, op in written} == {None}


async def test_a_tenants_key_rebinds_its_own_queues_only(ingest: IngestApp) -> None:
    async with ingest.client(ACME_KEY) as acme:
        own = await acme.post(PATH, json={"campaign": "spring", "reason": "r", "data": {"egress_pool": "shared"}})
        assert own.status_code == 200, own.text
        [op] = operations(ingest)
        assert (op.tenant, op.issued_by) == ("acme", "tenant:acme")
        other = {"tenant": "globex", "reason": "r", "data": {"egress_pool": "shared"}}
        assert "globex" in problem(await acme.post(PATH, json=other), 403)["detail"]
        into = {"campaign": "spring", "reason": "r", "data": {"queue": "spring:globex@example.com"}}
        problem(await acme.post(PATH, json=into), 403)
    assert len(operations(ingest)) == 1
    results = [(a.actor_tenant, a.result, a.status) for a in audited(ingest)]
    assert results == [("acme", "accepted", 200), ("acme", "refused", 403), ("acme", "refused", 403)]
    assert all("globex" not in a.scope.values() for a in audited(ingest))  # not planted in another's trail


@pytest.mark.parametrize(
    "body",
    [
        {"tenant": "acme", "reason": "r", "data": {"egress_pool": "no-such-pool"}},
        {"tenant": "acme", "reason": "r", "data": {"queue": "example.com"}},  # a rebind keeps the tenant
        {"tenant": "acme", "reason": "r", "data": {"egress_pool": "shared"}, "always_flush": True},
        {"tenant": "acme", "reason": "r", "data": {"egress_pool": "shared"}, "trigger_rebind_event": True},
        {"tenant": "acme", "reason": "r", "data": {"egress_pool": "shared"}, "routing_domain": "r.test"},
        {"tenant": "acme", "reason": "r", "data": {"campaign": "other"}},
        {"tenant": "acme", "reason": "r", "data": {"routing_domain": "r.test"}},  # no campaign, domain: no queue
    ],
)
async def test_refusals_are_problems_that_write_nothing_but_their_audit_entry(
    ingest: IngestApp, admin: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    problem(await admin.post(PATH, json=body), 422)
    assert operations(ingest) == []
    [entry] = audited(ingest)
    assert (entry.operation, entry.result, entry.status) == ("rebind", "refused", 422)


async def test_no_key_is_401_and_a_bad_body_400(ingest: IngestApp) -> None:
    async with ingest.client(key=None) as anonymous:
        problem(await anonymous.post(PATH, json={"tenant": "acme", "reason": "r", "data": {"queue": "x"}}), 401)
    async with ingest.client() as admin:
        problem(await admin.post(PATH, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert operations(ingest) == []
