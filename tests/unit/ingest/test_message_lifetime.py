"""A message may not outlive its body: mail.bodies keeps bodies 10 days, so a `send_at` or `expires_at` later than
acceptance + MESSAGE_LIFETIME (9 days) is refused — 422 naming the field for the request's metadata, the recipient
alone for its own — where it used to be accepted and then sent (or retried) with its body gone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from mailstream.events.records import AcceptedMessage
from mailstream.events.topics import ACCEPTED, BODIES, MESSAGE_LIFETIME
from tests.infra.ingest_app import T0, IngestApp, problem

GOOD: dict[str, Any] = {
    "envelope_sender": "s@acme.test",
    "recipients": [{"email": "r@example.com"}],
    "content": "S: s\n\nb\n",
}
TOO_LATE = (T0 + MESSAGE_LIFETIME + timedelta(seconds=1)).isoformat()
LAST = (T0 + MESSAGE_LIFETIME).isoformat()


def test_the_lifetime_is_a_day_short_of_the_bodies_retention() -> None:
    assert timedelta(milliseconds=BODIES.retention_ms) - timedelta(days=1) == MESSAGE_LIFETIME


@pytest.mark.parametrize("key", ["send_at", "expires_at"])
async def test_a_request_time_past_the_lifetime_is_422_naming_the_field(
    ingest: IngestApp, admin: httpx.AsyncClient, key: str
) -> None:
    body = problem(await admin.post("/api/inject/v1", json={**GOOD, "metadata": {key: TOO_LATE}}), 422)
    assert [e["field"] for e in body["errors"]] == [f"metadata.{key}"]
    assert "later than a message may live" in body["errors"][0]["message"]
    assert ingest.producer.bus.topics == {}


@pytest.mark.parametrize("key", ["send_at", "expires_at"])
async def test_a_recipients_time_past_the_lifetime_fails_it_alone(
    ingest: IngestApp, admin: httpx.AsyncClient, key: str
) -> None:
    request = {
        **GOOD,
        "recipients": [{"email": "a@example.com", "metadata": {key: TOO_LATE}}, {"email": "b@example.com"}],
    }
    answer = (await admin.post("/api/inject/v1", json=request)).json()
    assert answer["failed_recipients"] == ["a@example.com"]
    assert f"metadata.{key}" in answer["errors"][0]
    assert [m.recipient for _, m in ingest.written(ACCEPTED, AcceptedMessage)] == ["b@example.com"]


async def test_the_last_instant_is_accepted(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    answer = (
        await admin.post("/api/inject/v1", json={**GOOD, "metadata": {"send_at": LAST, "expires_at": LAST}})
    ).json()
    assert answer["success_count"] == 1
    [(_, accepted)] = ingest.written(ACCEPTED, AcceptedMessage)
    assert accepted.send_at == accepted.expires_at == T0 + MESSAGE_LIFETIME
