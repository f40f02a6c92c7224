"""API keys: a missing or unknown key gets 401 with a problem body; a tenant's key sees its own tenant only."""

from __future__ import annotations

from typing import Any

import pytest

from mailstream.events import fixtures
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, IngestApp, problem

GOOD: dict[str, Any] = {
    "envelope_sender": "s@acme.test",
    "recipients": [{"email": "r@example.com"}],
    "content": {"subject": "s", "text_body": "t"},
}
ROUTES = [
    ("POST", "/api/inject/v1"),
    ("GET", "/api/transactions/tx-1"),
    ("POST", "/api/transactions/tx-1/cancel"),
    ("GET", "/api/queue/servers"),
    ("GET", "/api/queue/stats"),
    ("POST", "/api/admin/suspend"),
    ("DELETE", "/api/admin/suspend"),
    ("POST", "/api/admin/queue-state"),
    ("POST", "/api/admin/bounce"),
    ("GET", "/api/admin/suspensions"),
]


@pytest.mark.parametrize(
    ("authorization", "detail", "challenge"),
    [
        (None, "send 'Authorization: Bearer <api key>'", 'Bearer realm="mailstream"'),
        ("Basic YWRtaW46YWRtaW4=", "send 'Authorization: Bearer <api key>'", 'Bearer realm="mailstream"'),
        ("Bearer", "send 'Authorization: Bearer <api key>'", 'Bearer realm="mailstream"'),
        ("Bearer wrong-key-wrong-key", "unknown API key", 'Bearer realm="mailstream", error="invalid_token"'),
    ],
)
@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_missing_or_unknown_key_is_401(
    ingest: IngestApp, method: str, path: str, authorization: str | None, detail: str, challenge: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with ingest.client(None) as client:
        response = await client.request(method, path, json=GOOD, headers=headers)
    body = problem(response, 401)
    assert body["title"] == "Unauthorized"
    assert body["detail"] == detail
    assert response.headers["www-authenticate"] == challenge
    assert ingest.producer.bus.topics == {}  # refused before anything was read or written


async def test_the_scheme_is_case_insensitive_and_the_token_trimmed(ingest: IngestApp) -> None:
    async with ingest.client(None) as client:
        response = await client.get("/api/queue/servers", headers={"Authorization": f"bearer  {ACME_KEY} "})
    assert response.status_code == 200, response.text


async def test_a_tenant_key_cannot_see_or_cancel_another_tenants_transaction(ingest: IngestApp) -> None:
    await ingest.publish_status(fixtures.status().model_copy(update={"status": "scheduled", "attempts": ()}))
    async with ingest.client(GLOBEX_KEY) as globex:
        hidden = await globex.get("/api/transactions/tx-1")
        cancelled = await globex.post("/api/transactions/tx-1/cancel")
    for response in (hidden, cancelled):
        assert problem(response, 404)["detail"] == "no transaction 'tx-1' visible to this API key"
    async with ingest.client(ACME_KEY) as acme:
        assert (await acme.get("/api/transactions/tx-1")).json()["tenant"] == "acme"
    async with ingest.client() as admin:  # an admin sees every tenant
        assert (await admin.get("/api/transactions/tx-1")).status_code == 200


async def test_a_tenant_key_cannot_claim_another_tenant(ingest: IngestApp) -> None:
    async with ingest.client(ACME_KEY) as acme:
        body = (await acme.post("/api/inject/v1", json={**GOOD, "metadata": {"tenant": "globex"}})).json()
    assert body["success_count"] == 0
    assert body["errors"] == ["r@example.com: metadata.tenant 'globex' is not the tenant of this API key"]


@pytest.mark.parametrize("path", ["/api/queue/stats?tenant=globex", "/api/admin/suspensions?tenant=globex"])
async def test_a_tenant_key_cannot_read_another_tenants_numbers(ingest: IngestApp, path: str) -> None:
    async with ingest.client(ACME_KEY) as acme:
        body = problem(await acme.get(path), 403)
    assert body["errors"] == [{"field": "tenant", "message": "not the tenant of this API key"}]
