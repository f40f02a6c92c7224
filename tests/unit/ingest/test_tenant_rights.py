"""A tenant's key is held to its tenant's rights (`tenants.<t>`): `routing_domain` and `queue` metadata only where
the configuration allows them (a named queue always the tenant's own), and only its sender domains, in the
envelope and in From. A refusal is a 403 naming the field, and nothing is written. Admin keys are not held."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstream.events.records import AcceptedMessage
from mailstream.events.topics import ACCEPTED
from tests.infra.ingest_app import ACME_KEY, GLOBEX_KEY, IngestApp, problem

TENANTS = {
    "acme": {
        "sender_domains": ["acme.test"],
        "routing_domains": ["relay.acme.test"],
        "queues": ["bulk:acme@*", "bulk:globex@*"],
    }
}
REQUEST: dict[str, Any] = {
    "envelope_sender": "bounces@acme.test",
    "recipients": [{"email": "ann@example.com"}],
    "content": {"from": {"email": "news@acme.test"}, "subject": "s", "text_body": "t"},
}


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[IngestApp]:
    built = IngestApp.build(tmp_path / "status.sqlite3", TENANTS)
    yield built
    built.close()


async def inject(ingest: IngestApp, key: str | None, body: dict[str, Any]) -> Any:
    async with ingest.client(key) as client:
        return await client.post("/api/inject/v1", json=body)


def forbidden(response: Any) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = problem(response, 403)["errors"]
    return errors


def accepted(ingest: IngestApp) -> list[AcceptedMessage]:
    return [msg for _, msg in ingest.written(ACCEPTED, AcceptedMessage)]


async def test_a_tenant_key_within_its_rights_is_accepted(ingest: IngestApp) -> None:
    body = {**REQUEST, "metadata": {"routing_domain": "relay.acme.test", "queue": "bulk:acme@example.com"}}
    response = await inject(ingest, ACME_KEY, body)
    assert response.json()["success_count"] == 1, response.text
    [msg] = accepted(ingest)
    assert (msg.tenant, msg.queue, msg.routing_domain) == ("acme", "bulk:acme@example.com", "relay.acme.test")


@pytest.mark.parametrize(
    ("metadata", "recipient_metadata", "field", "message"),
    [
        (
            {"routing_domain": "127.0.0.1"},
            {},
            "metadata.routing_domain",
            "tenant 'acme' may not route via '127.0.0.1' (not in tenants.acme.routing_domains)",
        ),
        (
            {},
            {"queue": "bulk:globex@example.com"},  # listed, but another tenant's queue
            "recipients[0].metadata.queue",
            "queue 'bulk:globex@example.com' does not belong to tenant 'acme' (its queues are [campaign:]acme@domain)",
        ),
        (
            {"queue": "spring:acme@example.com"},
            {},
            "metadata.queue",
            "tenant 'acme' may not use queue 'spring:acme@example.com' (not in tenants.acme.queues)",
        ),
    ],
)
async def test_steering_metadata_beyond_the_tenants_rights_is_403(
    ingest: IngestApp, metadata: dict[str, str], recipient_metadata: dict[str, str], field: str, message: str
) -> None:
    body = {
        **REQUEST,
        "metadata": metadata,
        "recipients": [{"email": "ann@example.com", "metadata": recipient_metadata}],
    }
    assert forbidden(await inject(ingest, ACME_KEY, body)) == [{"field": field, "message": message}]
    assert ingest.producer.bus.topics == {}  # refused before anything was written, bodies included


async def test_a_tenant_without_rights_may_set_neither(ingest: IngestApp) -> None:
    """globex has no entry: any sender, as before the setting existed, but no routing domain and no queue."""
    body = {**REQUEST, "metadata": {"routing_domain": "relay.globex.test", "queue": "globex@example.com"}}
    assert [e["field"] for e in forbidden(await inject(ingest, GLOBEX_KEY, body))] == [
        "metadata.routing_domain",
        "metadata.queue",
    ]
    assert (await inject(ingest, GLOBEX_KEY, REQUEST)).json()["success_count"] == 1


async def test_an_admin_key_may_route_anywhere_and_name_any_queue(ingest: IngestApp) -> None:
    body = {
        **REQUEST,
        "envelope_sender": "x@anywhere.test",
        "metadata": {"tenant": "acme", "routing_domain": "mx.other.test", "queue": "bulk:globex@example.com"},
    }
    assert (await inject(ingest, "admin-key-0123456789", body)).json()["success_count"] == 1
    [msg] = accepted(ingest)
    assert (msg.queue, msg.routing_domain) == ("bulk:globex@example.com", "mx.other.test")


@pytest.mark.parametrize(
    ("change", "field", "address"),
    [
        ({"envelope_sender": "bounces@evil.test"}, "envelope_sender", "bounces@evil.test"),
        (
            {"content": {"from": {"email": "ceo@evil.test", "name": "CEO"}, "subject": "s", "text_body": "t"}},
            "content.from",
            "ceo@evil.test",
        ),
        (
            {"content": {"headers": {"From": "Boss <boss@evil.test>"}, "subject": "s", "text_body": "t"}},
            "content.headers.From",
            "boss@evil.test",
        ),
        ({"content": "From: a@acme.test, b@evil.test\r\nSubject: s\r\n\r\nt\r\n"}, "content", "b@evil.test"),
    ],
)
async def test_a_sender_domain_outside_the_tenants_list_is_403(
    ingest: IngestApp, change: dict[str, Any], field: str, address: str
) -> None:
    [error] = forbidden(await inject(ingest, ACME_KEY, {**REQUEST, **change}))
    assert error["field"] == field
    assert f"tenant 'acme' may not send as <{address}> (its sender domains: acme.test)" in error["message"]
    assert ingest.producer.bus.topics == {}


async def test_a_from_made_per_recipient_is_checked_for_each(ingest: IngestApp) -> None:
    body = {
        **REQUEST,
        "content": {"headers": {"From": "x@{{ domain }}"}, "subject": "s", "text_body": "t"},
        "recipients": [
            {"email": "ann@example.com", "substitutions": {"domain": "acme.test"}},
            {"email": "bob@example.com", "substitutions": {"domain": "evil.test"}},
        ],
    }
    [error] = forbidden(await inject(ingest, ACME_KEY, body))
    assert "<x@evil.test>" in error["message"]
    assert accepted(ingest) == []
