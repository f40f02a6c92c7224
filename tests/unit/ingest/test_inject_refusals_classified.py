"""A recipient refused at submission is classified as stage 1 classifies every other end: PolicyRelated, block."""

from __future__ import annotations

from datetime import timedelta

import httpx

from mailstream.events.topics import MESSAGE_LIFETIME
from tests.infra.ingest_app import T0, IngestApp


async def test_a_refused_recipient_is_classified_beside_kumomtas_answer(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    too_late = (T0 + MESSAGE_LIFETIME + timedelta(seconds=1)).isoformat()
    request = {
        "envelope_sender": "s@acme.test",
        "recipients": [{"email": "a@example.com", "metadata": {"send_at": too_late}}, {"email": "b@example.com"}],
        "content": "S: s\n\nb\n",
    }
    answer = (await admin.post("/api/inject/v1", json=request)).json()
    assert answer["failed_recipients"] == ["a@example.com"]
    [refusal] = answer["refusals"]
    assert (refusal["recipient"], refusal["bounce_classification"], refusal["bounce_type"]) == (
        "a@example.com",
        "PolicyRelated",
        "block",
    )
    assert answer["errors"] == [f"a@example.com: {refusal['error']}"]


async def test_an_answer_without_refusals_says_so(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    request = {"envelope_sender": "s@acme.test", "recipients": [{"email": "b@example.com"}], "content": "S: s\n\nb\n"}
    answer = (await admin.post("/api/inject/v1", json=request)).json()
    assert (answer["success_count"], answer["refusals"]) == (1, [])
