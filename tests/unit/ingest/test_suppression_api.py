"""GET, POST and DELETE /api/suppressions, and inject applying the lists, through ASGI over the in-memory producer.

What stage 1 would publish on mail.suppressions is handed to the view; what the API writes is read back from
mail.queue-commands, where stage 1 reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis

from mailstream.core.clock import ManualClock
from mailstream.events.memory import MemoryProducer, MemoryTransactions
from mailstream.events.records import Suppression, SuppressionRemoved
from mailstream.events.topics import ACCEPTED, QUEUE_COMMANDS
from mailstream.ingest.app import create_app
from mailstream.ingest.problems import PROBLEM_JSON
from mailstream.ingest.status_view import StatusStore, StatusView
from mailstream.ingest.suppression_api import suppression_router
from mailstream.intake.submission import Submitter
from mailstream.intake.suppression_view import SuppressionView
from tests.infra.ingest_app import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, T0, asgi_client, ingest_config, problem


@dataclass
class Api:
    view: SuppressionView
    producer: MemoryProducer
    clock: ManualClock
    clients: dict[str, httpx.AsyncClient]

    def publish(self, tenant: str | None, *addresses: str, **fields: Any) -> None:
        """Entries as stage 1 publishes them."""
        for address in addresses:
            self.view.apply(
                Suppression(
                    address=address,
                    tenant=tenant,
                    reason=fields.get("reason", "hard bounce: 550 5.1.1 user unknown"),
                    source=fields.get("source", "bounce"),
                    created_at=T0,
                    expires_at=fields.get("expires_at"),
                    created_by="scheduler",
                )
            )

    def requests(self) -> list[tuple[str, Suppression | SuppressionRemoved]]:
        found = []
        for record in self.producer.records(QUEUE_COMMANDS):
            value = QUEUE_COMMANDS.decode(record.value)
            assert isinstance(value, Suppression | SuppressionRemoved)
            found.append(((record.key or b"").decode(), value))
        return found


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    config = ingest_config(tmp_path / "status.sqlite3")
    clock, producer, view = ManualClock(T0), MemoryProducer(), SuppressionView()
    view.caught_up.set()
    statuses = StatusView(StatusStore(config.ingest.status_db), config.ingest.max_waiters)
    submitter = Submitter(producer, clock, writer=MemoryTransactions(producer), suppressed=view.refusal)
    app = create_app(
        config.ingest, submitter, statuses, clock, routers=[suppression_router(config, view, producer, clock)]
    )
    app.state.answers.caught_up.set()
    clients = {
        name: asgi_client(app, key) for name, key in (("admin", ADMIN_KEY), ("acme", ACME_KEY), ("globex", GLOBEX_KEY))
    }
    yield Api(view, producer, clock, clients)
    for client in clients.values():
        await client.aclose()
    statuses.store.close()
    app.state.answers.store.close()
    app.state.render_pool.close()


async def test_a_tenant_adds_to_its_own_list_through_stage_1(api: Api) -> None:
    body = {
        "entries": [
            {"address": " Ann@Example.COM "},
            {"address": "bob@example.com", "reason": "asked", "expires_at": (T0 + timedelta(days=1)).isoformat()},
            {"address": "ann@example.com", "reason": "twice"},
        ]
    }
    response = await api.clients["acme"].post("/api/suppressions", json=body)
    assert response.status_code == 202, response.text
    requests = api.requests()
    assert [key for key, _ in requests] == ["tenant:acme", "tenant:acme"]  # the tenant's stage 1 partition
    ann, bob = (entry for _, entry in requests)
    assert isinstance(ann, Suppression)
    assert isinstance(bob, Suppression)
    assert (ann.address, ann.tenant, ann.reason, ann.source, ann.created_by) == (
        "ann@example.com",
        "acme",
        "twice",
        "api",
        "tenant:acme",
    )
    assert (bob.reason, bob.expires_at, ann.expires_at) == ("asked", T0 + timedelta(days=1), None)
    assert [e["address"] for e in response.json()["accepted"]] == ["ann@example.com", "bob@example.com"]


async def test_an_admin_names_the_tenant_or_adds_to_the_list_of_mail_without_one(api: Api) -> None:
    assert (
        await api.clients["admin"].post(
            "/api/suppressions", json={"tenant": "globex", "entries": [{"address": "a@x.test"}]}
        )
    ).status_code == 202
    assert (
        await api.clients["admin"].post("/api/suppressions", json={"entries": [{"address": "b@x.test"}]})
    ).status_code == 202
    [(globex_key, globex), (none_key, untenanted)] = api.requests()
    assert (globex_key, globex.tenant, globex.created_by) == ("tenant:globex", "globex", "admin")  # type: ignore[union-attr]
    assert (none_key, untenanted.tenant) == ("suppression:b@x.test", None)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"tenant": "globex", "entries": [{"address": "a@x.test"}]}, 403, "tenant"),
        ({"entries": [{"address": "not an address"}]}, 422, "entries[0].address"),
        ({"entries": []}, 422, "entries"),
        (
            {"entries": [{"address": "a@x.test", "expires_at": "2026-11-23T09:00:00+00:00"}]},
            422,
            "entries[0].expires_at",
        ),
        ({"entries": [{"address": "a@x.test", "expires_at": "2026-12-23T09:00:00"}]}, 422, "entries[0].expires_at"),
        ({"entries": [{"address": "a@x.test", "colour": "red"}]}, 422, "entries[0].colour"),
        (
            {"entries": [{"address": "a@x.test", "expires_at": "9999-12-31T23:59:00-10:00"}]},
            422,
            "entries[0].expires_at",
        ),
    ],
)
async def test_what_cannot_be_added_is_refused_naming_the_field_and_nothing_is_written(
    api: Api, body: dict[str, Any], status: int, field: str
) -> None:
    found = problem(await api.clients["acme"].post("/api/suppressions", json=body), status)
    assert found["errors"][0]["field"] == field, found
    assert api.requests() == []


async def test_a_body_that_is_not_json_is_400_and_a_lone_surrogate_422(api: Api) -> None:
    problem(await api.clients["acme"].post("/api/suppressions", content=b"{"), 400)
    raw = b'{"entries": [{"address": "a@x.test", "reason": "\\ud800"}]}'
    problem(await api.clients["acme"].post("/api/suppressions", content=raw), 422)
    assert api.requests() == []


async def test_a_tenant_lists_only_its_own_entries_in_force(api: Api) -> None:
    api.publish("acme", "ann@example.com", "bob@other.test")
    api.publish("acme", "old@example.com", expires_at=T0 + timedelta(hours=1))
    api.publish("globex", "ann@example.com", "zed@example.com")
    listed = (await api.clients["acme"].get("/api/suppressions")).json()
    assert [(e["tenant"], e["address"]) for e in listed["suppressions"]] == [
        ("acme", "ann@example.com"),
        ("acme", "bob@other.test"),
        ("acme", "old@example.com"),
    ]
    assert listed["next_cursor"] is None
    api.clock.advance(timedelta(hours=1))  # its expiry has come, read or not stage 1's removal
    listed = (await api.clients["acme"].get("/api/suppressions")).json()
    assert [e["address"] for e in listed["suppressions"]] == ["ann@example.com", "bob@other.test"]
    problem(await api.clients["globex"].get("/api/suppressions", params={"tenant": "acme"}), 403)
    everyone = (await api.clients["admin"].get("/api/suppressions")).json()["suppressions"]
    assert [(e["tenant"], e["address"]) for e in everyone] == [
        ("acme", "ann@example.com"),
        ("acme", "bob@other.test"),
        ("globex", "ann@example.com"),
        ("globex", "zed@example.com"),
    ]
    only = (await api.clients["admin"].get("/api/suppressions", params={"tenant": "globex"})).json()["suppressions"]
    assert [e["address"] for e in only] == ["ann@example.com", "zed@example.com"]


async def test_search_domain_and_source_filter_the_list(api: Api) -> None:
    api.publish("acme", "ann.smith@example.com", "bob@example.com", "ann@other.test")
    api.publish("acme", "carol@example.com", source="api", reason="asked")

    async def addresses(**params: str) -> list[str]:
        page = (await api.clients["acme"].get("/api/suppressions", params=params)).json()
        return [e["address"] for e in page["suppressions"]]

    assert await addresses(search="ANN") == ["ann.smith@example.com", "ann@other.test"]
    assert await addresses(domain="example.com") == ["ann.smith@example.com", "bob@example.com", "carol@example.com"]
    assert await addresses(search="ann", domain="example.com") == ["ann.smith@example.com"]
    assert await addresses(source="api") == ["carol@example.com"]
    problem(await api.clients["acme"].get("/api/suppressions", params={"source": "rumour"}), 422)


async def test_pages_follow_the_cursor_through_the_whole_list(api: Api) -> None:
    addresses = [f"r{i:02}@example.com" for i in range(7)]
    api.publish("acme", *addresses)
    api.publish("globex", "r00@example.com")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await api.clients["acme"].get("/api/suppressions", params=params)).json()
        seen += [e["address"] for e in page["suppressions"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (addresses, 3)
    problem(await api.clients["acme"].get("/api/suppressions", params={"cursor": "nonsense"}), 422)
    problem(await api.clients["acme"].get("/api/suppressions", params={"limit": "0"}), 422)
    problem(await api.clients["acme"].get("/api/suppressions", params={"limit": "1001"}), 422)


async def test_a_tenant_removes_its_own_entry_and_never_anothers(api: Api) -> None:
    api.publish("acme", "ann@example.com")
    api.publish("globex", "zed@example.com")
    problem(await api.clients["acme"].delete("/api/suppressions/zed@example.com"), 404)  # not on its list
    problem(await api.clients["acme"].delete("/api/suppressions/zed@example.com", params={"tenant": "globex"}), 403)
    problem(await api.clients["acme"].delete("/api/suppressions/not-an-address"), 422)
    assert api.requests() == []
    response = await api.clients["acme"].delete("/api/suppressions/Ann@Example.com")
    assert response.status_code == 204, response.text
    [(key, removed)] = api.requests()
    assert isinstance(removed, SuppressionRemoved)
    assert (key, removed.address, removed.tenant, removed.removed_by) == (
        "tenant:acme",
        "ann@example.com",
        "acme",
        "tenant:acme",
    )
    assert (
        await api.clients["admin"].delete("/api/suppressions/zed@example.com", params={"tenant": "globex"})
    ).status_code == 204


async def test_inject_fails_a_suppressed_recipient_alone_and_only_for_its_tenant(api: Api) -> None:
    api.publish("acme", "ann@example.com", reason="hard bounce: 550 5.1.1 user unknown")
    request = {
        "envelope_sender": "s@acme.test",
        "recipients": [{"email": "ANN@example.com"}, {"email": "bob@example.com"}],
        "content": {"subject": "s", "text_body": "t"},
    }
    answer = (await api.clients["acme"].post("/api/inject/v1", json=request)).json()
    assert (answer["success_count"], answer["fail_count"], answer["failed_recipients"]) == (1, 1, ["ANN@example.com"])
    assert answer["errors"] == [
        "ANN@example.com: <ann@example.com> is on the suppression list: hard bounce: 550 5.1.1 user unknown"
    ]
    other = (await api.clients["globex"].post("/api/inject/v1", json=request)).json()
    assert other["success_count"] == 2  # globex's list does not hold it
    assert len(api.producer.records(ACCEPTED)) == 3


async def test_before_the_list_is_read_inject_and_the_list_answer_503(api: Api) -> None:
    api.view.caught_up.clear()
    request = {
        "envelope_sender": "s@acme.test",
        "recipients": [{"email": "a@x.test"}],
        "content": {"subject": "s", "text_body": "t"},
    }
    response = await api.clients["acme"].post("/api/inject/v1", json=request)
    assert response.status_code == 503
    assert "suppression list" in response.json()["detail"]
    problem(await api.clients["acme"].get("/api/suppressions"), 503)
    assert api.producer.records(ACCEPTED) == []


async def test_the_openapi_document_declares_every_answer(api: Api) -> None:
    doc = (await api.clients["admin"].get("/openapi.json")).json()
    schemathesis.openapi.from_dict(doc).validate()
    paths = doc["paths"]
    operations = {
        ("get", "/api/suppressions"): {"200", "401", "403", "422", "503"},
        ("post", "/api/suppressions"): {"202", "400", "401", "403", "413", "422", "503"},
        ("delete", "/api/suppressions/{address}"): {"204", "401", "403", "404", "422", "503"},
    }
    for (method, path), codes in operations.items():
        op = paths[path][method]
        assert codes <= set(op["responses"])  # (a body deadline may add its 408)
        assert op["security"] == [{"apiKey": []}]
        for code, response in op["responses"].items():
            if int(code) >= 400:
                assert response["content"] == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        assert op["responses"]["503"]["headers"]["Retry-After"]["required"]
    body = paths["/api/suppressions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AddSuppressions"}
    assert doc["components"]["schemas"]["NewEntry"]["required"] == ["address"]
