"""The OpenAPI document describes the API as it behaves: valid OpenAPI, every error a documented problem, the
hand-read bodies described; and the answers that were outside the contract (a router's plain-JSON 404 and 405, a
500 for a scope name with surrounding spaces, a readiness 503 without Retry-After) now inside it. The whole
contract is fuzzed against the live service in tests/e2e/test_api_fuzz.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from mailstream.ingest.webhook_api import webhook_router
from mailstream.ingest.webhook_view import WebhookView
from tests.infra.ingest_app import IngestApp, problem

UNAUTHENTICATED = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[IngestApp]:
    app = IngestApp.build(tmp_path / "status.sqlite3")
    app.app.include_router(webhook_router(app.config, WebhookView(10), app.producer, app.clock))
    yield app
    app.close()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


async def test_the_document_is_valid_openapi_and_every_route_is_in_it(ingest: IngestApp) -> None:
    doc = ingest.app.openapi()
    schemathesis.openapi.from_dict(doc).validate()
    routes = {(path, method) for path, method, _ in _operations(doc)}
    assert ("/api/inject/v1", "post") in routes
    assert ("/api/webhooks/{ident}", "delete") in routes
    assert len(routes) >= 18


async def test_every_error_is_a_documented_problem_and_authenticated_routes_say_so(ingest: IngestApp) -> None:
    doc = ingest.app.openapi()
    for path, method, op in _operations(doc):
        responses = op["responses"]
        assert ("401" in responses) == (path not in UNAUTHENTICATED), (method, path)
        # The listener's own answers (http_guard), before any route: a late body, too many connections.
        assert ("408" in responses) == ("requestBody" in op), (method, path)
        assert "503" in responses, (method, path)
        if "401" in responses:
            assert op["security"] == [{"apiKey": []}]
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"]
        for code, response in responses.items():
            if int(code) >= 400:
                content = response["content"]
                assert list(content) == ["application/problem+json"], (method, path, code)
                assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
            if code in ("429", "503"):
                assert response["headers"]["Retry-After"]["required"], (method, path, code)
        ok = next(r for code, r in responses.items() if code.startswith("2"))
        assert "content" not in ok or any("schema" in m for m in ok["content"].values()), (method, path)


async def test_hand_read_bodies_are_described_with_their_models(ingest: IngestApp) -> None:
    doc = ingest.app.openapi()
    body = doc["paths"]["/api/inject/v1"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InjectRequest"}
    inject = doc["components"]["schemas"]["InjectRequest"]
    assert set(inject["required"]) >= {"envelope_sender", "recipients", "content"}
    assert inject["properties"]["envelope_sender"]["format"] == "email"
    suspend = doc["paths"]["/api/admin/suspend"]["post"]
    assert not suspend["requestBody"]["required"]  # the query may say it instead
    assert {p["name"] for p in suspend["parameters"]} >= {"tenant", "duration"}
    duration = doc["components"]["schemas"]["SuspendRequest"]["properties"]["duration"]
    assert {"type": "number"} in duration["anyOf"][0]["anyOf"]  # seconds, as well as "2h"


async def test_an_unknown_path_or_method_answers_a_problem(ingest: IngestApp) -> None:
    async with ingest.client() as client:
        problem(await client.get("/api/nothing-here"), 404)
        wrong = await client.put("/api/inject/v1")
        problem(wrong, 405)
        assert wrong.headers["allow"] == "POST"


async def test_a_scope_name_with_surrounding_spaces_is_refused_not_a_server_error(ingest: IngestApp) -> None:
    async with ingest.client() as client:
        body = problem(await client.post("/api/admin/bounce", json={"domain": "acme.test\n", "reason": "r"}), 422)
    assert body["errors"][0]["field"] == "domain"


async def test_not_ready_says_when_to_ask_again(ingest: IngestApp) -> None:
    async with ingest.client() as client:
        answer = await client.get("/readyz")
    problem(answer, 503)
    assert answer.headers["retry-after"] == "1"
