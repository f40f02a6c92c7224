"""POST/GET/DELETE /api/webhooks and the attempts read model, in process over the in-memory producer: who may
manage which endpoint, what is written to mail.webhooks, and the problems bad requests get."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError

from mailstream.config.model import Config, parse_config
from mailstream.core.clock import ManualClock
from mailstream.events import fixtures
from mailstream.events.memory import MemoryProducer
from mailstream.events.records import WebhookDeleted, WebhookEndpoint
from mailstream.events.topics import WEBHOOKS
from mailstream.ingest.problems import Problem, from_request_validation
from mailstream.ingest.webhook_api import webhook_router
from mailstream.ingest.webhook_view import WebhookView

ADMIN, ACME, GLOBEX = "admin-key-0123456789", "acme-key-0123456789", "globex-key-0123456789"
CONFIG = parse_config(
    {
        "ingest": {
            "api_keys": [
                {"key": ADMIN, "admin": True},
                {"key": ACME, "tenant": "acme"},
                {"key": GLOBEX, "tenant": "globex"},
            ]
        },
        "webhooks": {
            "attempts_kept": 3,
            "endpoints": [{"name": "ops", "url": "https://ops.test/hook", "secret": "s" * 16, "events": ["expired"]}],
        },
    },
    env={},
)
GOOD = {"name": "acme events", "url": "https://hooks.acme.test/mail", "events": ["delivered", "bounced"]}


class Api:
    def __init__(self, config: Config = CONFIG) -> None:
        self.producer = MemoryProducer()
        self.view = WebhookView(config.webhooks.attempts_kept)
        app = FastAPI()
        app.include_router(webhook_router(config, self.view, self.producer, ManualClock(fixtures.T0)))

        @app.exception_handler(Problem)
        async def _problem(_: Request, exc: Problem) -> Response:
            return exc.response()

        @app.exception_handler(RequestValidationError)
        async def _bad(_: Request, exc: RequestValidationError) -> Response:
            return from_request_validation(exc.errors()).response()

        self.transport = httpx.ASGITransport(app=app)

    def client(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self.transport, base_url="http://ingest", headers={"Authorization": f"Bearer {key}"}
        )

    def written(self) -> list[Any]:
        return [WEBHOOKS.decode(r.value) for r in self.producer.records(WEBHOOKS)]


@pytest.fixture
def api() -> Api:
    return Api()


async def test_a_tenant_registers_an_endpoint_and_gets_its_secret_once(api: Api) -> None:
    async with api.client(ACME) as acme:
        created = await acme.post("/api/webhooks", json=GOOD)
        assert created.status_code == 201
        body = created.json()
        assert body["secret"].startswith("whsec_")
        assert (body["tenant"], body["events"], body["retry_for_seconds"], body["timeout_seconds"]) == (
            "acme",
            ["delivered", "bounced"],
            86400,
            10,
        )
        assert created.headers["location"] == f"/api/webhooks/{body['id']}"
        [record] = api.written()
        assert isinstance(record, WebhookEndpoint)
        assert (record.id, record.secret, record.created_at, record.created_by) == (
            body["id"],
            body["secret"],
            fixtures.T0,
            "tenant:acme",
        )
        listed = (await acme.get("/api/webhooks")).json()["endpoints"]
        assert [e["id"] for e in listed] == [body["id"]]  # not the config's every-tenant endpoint
        assert "secret" not in listed[0]
        assert (await acme.get(f"/api/webhooks/{body['id']}")).json()["name"] == "acme events"


async def test_a_tenant_sees_and_deletes_only_its_own(api: Api) -> None:
    async with api.client(ACME) as acme, api.client(GLOBEX) as globex, api.client(ADMIN) as admin:
        ident = (await acme.post("/api/webhooks", json=GOOD)).json()["id"]
        assert (await globex.get(f"/api/webhooks/{ident}")).status_code == 404
        assert (await globex.get(f"/api/webhooks/{ident}/attempts")).status_code == 404
        assert (await globex.delete(f"/api/webhooks/{ident}")).status_code == 404
        assert (await globex.get("/api/webhooks")).json()["endpoints"] == []
        refused = await globex.post("/api/webhooks", json={**GOOD, "tenant": "acme"})
        assert refused.status_code == 403
        assert refused.json()["errors"] == [{"field": "tenant", "message": "not the tenant of this API key"}]
        assert {e["id"] for e in (await admin.get("/api/webhooks")).json()["endpoints"]} == {"config-ops", ident}
        assert (await acme.delete(f"/api/webhooks/{ident}")).status_code == 204
        assert (await acme.get(f"/api/webhooks/{ident}")).status_code == 404
        deleted = api.written()[-1]
        assert isinstance(deleted, WebhookDeleted)
        assert (deleted.id, deleted.tenant, deleted.deleted_by) == (ident, "acme", "tenant:acme")


async def test_an_admin_registers_for_any_tenant_or_all(api: Api) -> None:
    async with api.client(ADMIN) as admin:
        for_globex = (await admin.post("/api/webhooks", json={**GOOD, "tenant": "globex"})).json()
        for_all = (await admin.post("/api/webhooks", json={**GOOD, "secret": "my-own-secret-123456"})).json()
        assert (for_globex["tenant"], for_all["tenant"], for_all["secret"]) == ("globex", None, "my-own-secret-123456")
        assert (await admin.delete("/api/webhooks/config-ops")).status_code == 409  # only the file changes it
        assert (await admin.get("/api/webhooks/config-ops")).json()["source"] == "config"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "url": "ftp://x.test/"}, "url"),
        ({**GOOD, "url": "not a url"}, "url"),
        ({**GOOD, "events": ["opened"]}, "events[0]"),
        ({**GOOD, "events": []}, "events"),
        ({**GOOD, "secret": "short"}, "secret"),
        ({**GOOD, "retry_for": "8 days"}, "retry_for"),
        ({**GOOD, "retry_for": "soon"}, "retry_for"),
        ({**GOOD, "timeout": -1}, "timeout"),
        ({**GOOD, "timeout": True}, "timeout"),
        ({**GOOD, "colour": "red"}, "colour"),
        ({"url": GOOD["url"], "events": GOOD["events"]}, "name"),
        ([GOOD], "(body)"),
    ],
)
async def test_bad_requests_get_a_problem_naming_the_field(api: Api, body: Any, field: str) -> None:
    async with api.client(ACME) as acme:
        answer = await acme.post("/api/webhooks", json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["field"] == field
    assert api.written() == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 (loopback address)"),
        ("https://[::1]/hook", "::1 (loopback address)"),
        ("http://[::ffff:10.0.0.5]/hook", "::ffff:a00:5 (private address)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local address)"),
        ("http://2130706433/hook", "127.0.0.1 (loopback address)"),  # what a resolver makes of it
        ("http://0x7f.1/hook", "127.0.0.1 (loopback address)"),
        ("http://192.168.1.10/hook", "192.168.1.10 (private address)"),
        ("http://224.0.0.1/hook", "224.0.0.1 (multicast address)"),
    ],
)
async def test_an_endpoint_at_a_denied_address_is_refused(api: Api, url: str, why: str) -> None:
    async with api.client(ACME) as acme:
        answer = await acme.post("/api/webhooks", json={**GOOD, "url": url})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"] == [{"field": "url", "message": f"its host {why} is denied by webhooks.outbound"}]
    assert api.written() == []


async def test_an_allowed_network_or_endpoint_may_be_registered() -> None:
    config = parse_config(
        {
            "ingest": {"api_keys": [{"key": ACME, "tenant": "acme"}]},
            "webhooks": {"outbound": {"allow": ["10.20.0.0/16", "127.0.0.1:8080"]}},
        },
        env={},
    )
    api = Api(config)
    async with api.client(ACME) as acme:
        for url in ("http://10.20.3.4/hook", "http://127.0.0.1:8080/hook"):
            assert (await acme.post("/api/webhooks", json={**GOOD, "url": url})).status_code == 201, url
        refused = await acme.post("/api/webhooks", json={**GOOD, "url": "http://127.0.0.1:8081/hook"})  # another port
        assert refused.status_code == 422, refused.text
    assert [e.url for e in api.written()] == ["http://10.20.3.4/hook", "http://127.0.0.1:8080/hook"]


async def test_malformed_json_and_no_key(api: Api) -> None:
    async with api.client(ACME) as acme:
        assert (await acme.post("/api/webhooks", content=b"{")).status_code == 400
    async with api.client("unknown-key-0123456789") as stranger:
        assert (await stranger.get("/api/webhooks")).status_code == 401


async def test_attempts_are_the_newest_kept_newest_first(api: Api) -> None:
    async with api.client(ACME) as acme:
        ident = (await acme.post("/api/webhooks", json=GOOD)).json()["id"]
        for n in range(1, 6):
            api.view.add_attempt(
                fixtures.webhook_attempt().model_copy(
                    update={"endpoint_id": ident, "attempt": n, "outcome": "GIVEN_UP" if n == 5 else "RETRYING"}
                )
            )
        attempts = (await acme.get(f"/api/webhooks/{ident}/attempts")).json()["attempts"]
    assert [a["attempt"] for a in attempts] == [5, 4, 3]  # attempts_kept: 3
    assert [a["given_up"] for a in attempts] == [True, False, False]
    assert attempts[0]["event_id"] == "3-1234"
    assert attempts[0]["status_code"] == 200
