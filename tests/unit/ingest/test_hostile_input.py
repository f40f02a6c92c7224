"""Input that once answered 500 (issue #9): each is a 4xx problem naming the field, or fails its recipient alone,
and nothing reaches the event log for it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mailstream.events.records import AcceptedMessage
from mailstream.events.topics import ACCEPTED, AUDIT
from tests.infra.ingest_app import IngestApp, problem

RAW = "Subject: s\n\nbody\n"
GOOD: dict[str, Any] = {"envelope_sender": "s@acme.test", "recipients": [{"email": "r@example.com"}], "content": RAW}


def with_raw(fragment: str, *, where: str) -> bytes:
    """GOOD as JSON text with `fragment` (JSON text itself, such as a lone surrogate escape) spliced in at `where`."""
    return json.dumps({**GOOD, where: "@@"}).replace('"@@"', fragment).encode()


async def post_raw(client: httpx.AsyncClient, body: bytes, path: str = "/api/inject/v1") -> httpx.Response:
    return await client.post(path, content=body, headers={"content-type": "application/json"})


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


async def test_json_nested_a_thousand_deep_is_400(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    for deep in (b'{"a":' * 1000 + b"1" + b"}" * 1000, b"[" * 100_000 + b"]" * 100_000):
        body = problem(await post_raw(admin, deep), 400)
        assert "nested" in body["detail"]
    assert ingest.producer.bus.topics == {}


async def test_json_nested_past_the_depth_limit_names_where(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"x": deep}
    body = problem(await admin.post("/api/inject/v1", json={**GOOD, "metadata": {"k": deep}}), 422)
    assert fields(body)[0].startswith("metadata.k.x.x")
    assert "nested" in body["errors"][0]["message"]
    assert ingest.producer.bus.topics == {}


@pytest.mark.parametrize(
    ("fragment", "where", "field"),
    [
        ("9" * 4400, "substitutions", "substitutions"),
        ('{"n": ' + "9" * 4400 + "}", "substitutions", "substitutions.n"),
        ('{"n": -' + "1" * 50 + "}", "metadata", "metadata.n"),
        ('{"n": 1e999}', "metadata", "metadata.n"),
        ('{"n": NaN}', "metadata", "metadata.n"),
        ('{"n": -Infinity}', "substitutions", "substitutions.n"),
    ],
)
async def test_numbers_no_one_can_use_are_422(
    ingest: IngestApp, admin: httpx.AsyncClient, fragment: str, where: str, field: str
) -> None:
    body = problem(await post_raw(admin, with_raw(fragment, where=where)), 422)
    assert fields(body) == [field]
    assert ingest.producer.bus.topics == {}


@pytest.mark.parametrize(
    ("fragment", "where", "field"),
    [
        ('"Subject: s\\n\\n\\ud800 body"', "content", "content"),
        ('{"x": "\\udfff"}', "metadata", "metadata.x"),  # passed validation and failed after the bodies were written
        ('{"\\ud83d": "x"}', "metadata", "metadata['\\ud83d']"),
        ('[{"email": "\\ud800@example.com"}]', "recipients", "recipients[0].email"),
        ('"\\ud800@acme.test"', "envelope_sender", "envelope_sender"),
    ],
)
async def test_a_lone_surrogate_is_422_naming_the_field(
    ingest: IngestApp, admin: httpx.AsyncClient, fragment: str, where: str, field: str
) -> None:
    body = problem(await post_raw(admin, with_raw(fragment, where=where)), 422)
    assert fields(body) == [field]
    assert "surrogate" in body["errors"][0]["message"]
    assert ingest.producer.bus.topics == {}


async def test_a_line_break_in_a_display_name_fails_that_recipient_alone(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    request = {
        **GOOD,
        "content": {"subject": "s", "text_body": "t"},
        "recipients": [{"email": "a@example.com", "name": "Ann\r\nBcc: x@evil.test"}, {"email": "b@example.com"}],
    }
    response = await admin.post("/api/inject/v1", json=request)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["success_count"], answer["failed_recipients"]) == (1, ["a@example.com"])
    assert answer["errors"][0].startswith("a@example.com: recipients[0].name: ")
    assert [m.recipient for _, m in ingest.written(ACCEPTED, AcceptedMessage)] == ["b@example.com"]


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
@pytest.mark.parametrize("key", ["send_at", "expires_at"])
async def test_a_time_beyond_the_calendar_is_422_for_the_request(
    ingest: IngestApp, admin: httpx.AsyncClient, when: str, key: str
) -> None:
    body = problem(await admin.post("/api/inject/v1", json={**GOOD, "metadata": {key: when}}), 422)
    assert fields(body) == [f"metadata.{key}"]
    assert ingest.producer.bus.topics == {}


async def test_steering_metadata_of_the_request_is_checked_before_anything_is_written(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    for meta, field in (
        ({"priority": 11}, "metadata.priority"),
        ({"send_at": "soon"}, "metadata.send_at"),
        ({"campaign": 3}, "metadata.campaign"),
    ):
        body = problem(await admin.post("/api/inject/v1", json={**GOOD, "metadata": meta}), 422)
        assert fields(body) == [field]
    assert ingest.producer.bus.topics == {}


async def test_a_recipients_time_beyond_the_calendar_fails_it_alone(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    request = {
        **GOOD,
        "recipients": [
            {"email": "a@example.com", "metadata": {"send_at": "9999-12-31T23:59:59-01:00"}},
            {"email": "b@example.com"},
        ],
    }
    answer = (await admin.post("/api/inject/v1", json=request)).json()
    assert answer["failed_recipients"] == ["a@example.com"]
    assert "metadata.send_at" in answer["errors"][0]
    assert answer["success_count"] == 1


async def test_metadata_too_large_for_the_log_is_422_not_retry_later(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    # mail.accepted takes records of 1 MiB: a retry could never succeed, so it must not be told to retry.
    big = {**GOOD, "metadata": {"blob": "x" * (1100 * 1024)}}
    body = problem(await admin.post("/api/inject/v1", json=big), 422)
    assert fields(body) == ["metadata"]
    assert ingest.producer.bus.topics == {}


async def test_a_recipients_metadata_too_large_for_the_log_fails_it_alone(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    request = {
        **GOOD,
        "recipients": [
            {"email": "a@example.com", "metadata": {"blob": "x" * (1100 * 1024)}},
            {"email": "b@example.com"},
        ],
    }
    answer = (await admin.post("/api/inject/v1", json=request)).json()
    assert answer["failed_recipients"] == ["a@example.com"]
    assert "metadata" in answer["errors"][0]
    assert [m.recipient for _, m in ingest.written(ACCEPTED, AcceptedMessage)] == ["b@example.com"]


@pytest.mark.parametrize("duration", ["99999999999999999d", 1e300, "1e300", 10**30, "1000000 weeks"])
@pytest.mark.parametrize("path", ["/api/admin/suspend", "/api/admin/queue-state", "/api/admin/bounce"])
async def test_a_duration_that_overflows_is_422(
    ingest: IngestApp, admin: httpx.AsyncClient, duration: Any, path: str
) -> None:
    command = {"tenant": "acme", "duration": duration, "state": "suspended", "reason": "r"}
    if path != "/api/admin/queue-state":
        del command["state"]
    body = problem(await admin.post(path, json=command), 422)
    assert fields(body) == ["duration"]
    assert set(ingest.producer.bus.topics) == {AUDIT.name}  # no command: the refusal's audit record alone


async def test_query_parameter_errors_are_problems(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    body = problem(await admin.get("/api/transactions/t1?wait=abc"), 422)
    assert body["title"] == "Invalid request"
    assert fields(body) == ["wait"]
    assert body["detail"].startswith("wait: ")
