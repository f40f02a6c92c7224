"""POST /api/inject/v1: what it answers and what it writes to the event log (decoded from the in-memory producer)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from mailstream.core.trace_header import TraceRef
from mailstream.core.trace_header import decode as decode_trace
from mailstream.events import fixtures
from mailstream.events.records import AcceptedMessage, LogRecord, MessageBody, QueueStats, TransactionStatus
from mailstream.events.topics import ACCEPTED, BODIES, EVENTS, STATUS
from tests.infra.ingest_app import ACME_KEY, T0, IngestApp, problem

GOOD: dict[str, Any] = {
    "envelope_sender": "s@acme.test",
    "recipients": [{"email": "r@example.com"}],
    "content": {"subject": "s", "text_body": "t"},
}
RAW = "Message-ID: <fixed@acme.test>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nSubject: same for all\n\nhello\n"


def requests_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("mailstream_ingest_requests_total", {"outcome": outcome}) or 0.0


def recipients_counted(result: str) -> float:
    return REGISTRY.get_sample_value("mailstream_ingest_recipients_total", {"result": result}) or 0.0


@pytest.fixture
async def acme(ingest: IngestApp) -> AsyncIterator[httpx.AsyncClient]:
    async with ingest.client(ACME_KEY) as client:
        yield client


async def test_accepted_recipients_are_written_body_once_then_accepted_status_and_reception(
    ingest: IngestApp, acme: httpx.AsyncClient
) -> None:
    accepted_before = recipients_counted("accepted")
    request = {
        "envelope_sender": "bounce@acme.test",
        "content": RAW,
        "metadata": {"campaign": "spring", "job": 42},
        "recipients": [{"email": "ann@example.com"}, {"email": "bob@Example.ORG", "metadata": {"priority": 9}}],
    }
    response = await acme.post("/api/inject/v1", json=request)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success_count"] == 2
    assert answer["fail_count"] == 0
    assert answer["failed_recipients"] == []
    assert answer["errors"] == []
    ids = [t["id"] for t in answer["transactions"]]
    assert answer["transactions"] == [
        {
            "id": ids[0],
            "recipient": "ann@example.com",
            "queue": "spring:acme@example.com",
            "status_url": f"/api/transactions/{ids[0]}",
        },
        {
            "id": ids[1],
            "recipient": "bob@example.org",
            "queue": "spring:acme@example.org",
            "status_url": f"/api/transactions/{ids[1]}",
        },
    ]
    assert recipients_counted("accepted") == accepted_before + 2

    data = RAW.replace("\n", "\r\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    assert ingest.written(BODIES, MessageBody) == [(digest, MessageBody(sha256=digest, data=data))]  # shared: once
    body_record = ingest.producer.records(BODIES)[0]

    accepted = ingest.written(ACCEPTED, AcceptedMessage)
    assert [key for key, _ in accepted] == ["tenant:acme", "tenant:acme"]  # the route key: beside the tenant's queues
    ann, bob = (msg for _, msg in accepted)
    assert [ann.id, bob.id] == ids
    assert ann.submission_id == bob.submission_id
    assert (ann.tenant, ann.campaign, ann.sender, ann.domain) == ("acme", "spring", "bounce@acme.test", "example.com")
    assert (ann.body.topic, ann.body.partition, ann.body.offset) == (BODIES.name, body_record.partition, 0)
    assert (ann.body.sha256, ann.body.size) == (digest, len(data))
    assert bob.body == ann.body
    assert ann.message_id == "fixed@acme.test"
    assert ann.headers["Subject"] == "same for all"
    assert ann.metadata == {"job": "42"}  # the reserved keys steer; the others ride along as strings
    assert (ann.priority, bob.priority) == (None, 9)  # ann's is her queue's, applied by the scheduler
    assert ann.reception_protocol == "HTTP"
    assert ann.received_at == T0

    statuses = ingest.written(STATUS, TransactionStatus)
    assert [key for key, _ in statuses] == ids
    first = statuses[0][1]
    assert (first.version, first.status, first.queue, first.tenant) == (0, "scheduled", ann.queue, "acme")
    assert (first.created_at, first.updated_at, first.recipient) == (T0, T0, "ann@example.com")

    events = ingest.written(EVENTS, LogRecord)
    assert [key for key, _ in events] == ids
    reception = events[0][1]
    assert (reception.type, reception.size, reception.reception_protocol) == ("Reception", len(data), "HTTP")
    assert (reception.response.code, reception.response.enhanced_code) == (250, "2.0.0")
    assert reception.meta == {"job": "42"}


async def test_an_admin_names_the_tenant_and_the_schedule(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    send_at = (T0 + timedelta(hours=2)).isoformat()
    request = {**GOOD, "metadata": {"tenant": "globex", "send_at": send_at, "expires_at": "2026-11-30T00:00:00+01:00"}}
    assert (await admin.post("/api/inject/v1", json=request)).json()["success_count"] == 1
    [(key, msg)] = ingest.written(ACCEPTED, AcceptedMessage)
    assert key == "tenant:globex"
    assert msg.queue == "globex@example.com"
    assert msg.send_at == T0 + timedelta(hours=2)
    assert msg.expires_at == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    [(_, status)] = ingest.written(STATUS, TransactionStatus)
    assert status.next_attempt_at == msg.send_at


async def test_without_a_tenant_the_route_key_is_the_queue(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    assert (await admin.post("/api/inject/v1", json=GOOD)).json()["success_count"] == 1
    assert [key for key, _ in ingest.written(ACCEPTED, AcceptedMessage)] == ["queue:example.com"]


async def test_bad_recipients_fail_alone(ingest: IngestApp, acme: httpx.AsyncClient) -> None:
    failed_before = recipients_counted("failed")
    ingest.publish_stats(
        QueueStats(
            partition=0,
            tenant="acme",
            as_of=T0,
            suspensions=(
                fixtures.suspension().model_copy(
                    update={
                        "id": "s1",
                        "campaign": None,
                        "domain": "drain.test",
                        "state": "draining",
                        "reason": "moving",
                        "until": None,
                    }
                ),
            ),
        )
    )
    request = {
        **GOOD,
        "content": {"subject": "Hi {{ name }}", "text_body": "{{ 1 // n }}"},
        "recipients": [
            {"email": "no-at-sign"},
            {"email": "ok@example.com", "substitutions": {"n": 1}},
            {"email": "a b@example.com"},
            {"email": "pri@example.com", "substitutions": {"n": 1}, "metadata": {"priority": 11}},
            {"email": "zero@example.com", "substitutions": {"n": 0}},
            {"email": "held@drain.test", "substitutions": {"n": 1}},
        ],
    }
    answer = (await acme.post("/api/inject/v1", json=request)).json()
    assert answer["success_count"] == 1
    assert answer["fail_count"] == 5
    # Failures found while building the messages come first, in request order; then those of routing.
    assert answer["failed_recipients"] == [
        "no-at-sign",
        "a b@example.com",
        "zero@example.com",
        "pri@example.com",
        "held@drain.test",
    ]
    assert answer["errors"] == [
        "no-at-sign: invalid recipient address: address has no '@'",
        "a b@example.com: invalid recipient address: address contains whitespace",
        "zero@example.com: content.text_body: cannot render template: ZeroDivisionError: integer division or modulo "
        "by zero",
        "pri@example.com: metadata.priority must be an integer from 0 to 10",
        "held@drain.test: queue acme@drain.test is draining: moving",
    ]
    assert [t["recipient"] for t in answer["transactions"]] == ["ok@example.com"]
    assert [msg.recipient for _, msg in ingest.written(ACCEPTED, AcceptedMessage)] == ["ok@example.com"]
    assert len(ingest.producer.records(BODIES)) == 1
    assert recipients_counted("failed") == failed_before + 5


async def test_when_every_recipient_fails_nothing_is_written(ingest: IngestApp, acme: httpx.AsyncClient) -> None:
    answer = (await acme.post("/api/inject/v1", json={**GOOD, "recipients": [{"email": "x@"}]})).json()
    assert (answer["success_count"], answer["fail_count"], answer["transactions"]) == (0, 1, [])
    assert ingest.producer.bus.topics == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"envelope_sender": None}, "envelope_sender"),
        ({"envelope_sender": "not an address"}, "envelope_sender"),
        ({"recipients": []}, "recipients"),
        ({"recipients": "r@example.com"}, "recipients"),
        ({"recipients": [{"name": "no email"}]}, "recipients[0].email"),
        ({"content": 42}, "content"),
        ({"content": {"subject": "s"}}, "content.builder"),
        ({"content": {"subject": "{% if %}", "text_body": "t"}}, "content"),
        (
            {"content": {"subject": "s", "text_body": "t", "headers": {"Content-Type": "x/y"}}},
            "content.builder.headers",
        ),
        (
            {"content": {"subject": "s", "attachments": [{"data": "%%%", "content_type": "a/b", "base64": True}]}},
            "content",
        ),
        ({"deferred_generation": True}, "deferred_generation"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_an_invalid_request_is_422_naming_the_field(
    ingest: IngestApp, admin: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    invalid_before = requests_counted("invalid")
    request = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    body = problem(await admin.post("/api/inject/v1", json=request), 422)
    assert body["title"] == "Invalid request"
    assert any(e["field"].startswith(field) for e in body["errors"]), body
    assert body["detail"] == f"{body['errors'][0]['field']}: {body['errors'][0]['message']}"
    assert ingest.producer.bus.topics == {}
    assert requests_counted("invalid") == invalid_before + 1


async def test_a_body_that_is_not_json_is_400(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    for content in (b'{"envelope_sender": ', b"\xff\xfe"):
        body = problem(
            await admin.post("/api/inject/v1", content=content, headers={"content-type": "application/json"}), 400
        )
        assert body["title"] == "Malformed JSON"
        assert body["detail"].startswith("request body is not JSON: ")
    assert ingest.producer.bus.topics == {}


async def test_a_body_past_the_limit_is_413_whatever_content_length_says(tmp_path: Path) -> None:
    small = IngestApp.build(tmp_path / "status.sqlite3", request_body_limit=4096)
    huge = {**GOOD, "content": {"subject": "s", "text_body": "x" * 5000}}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is checked while reading
        for _ in range(8):
            yield b" " * 1000

    try:
        async with small.client() as admin:
            declared = await admin.post("/api/inject/v1", json=huge)
            streamed = await admin.post("/api/inject/v1", content=chunks())
            fits = await admin.post("/api/inject/v1", json=GOOD)
    finally:
        small.close()
    assert "content-length" not in streamed.request.headers
    for response in (declared, streamed):
        body = problem(response, 413)
        assert body["detail"] == "request body exceeds 4096 bytes"
    assert fits.status_code == 200
    assert len(small.producer.records(ACCEPTED)) == 1


async def test_an_event_log_that_refuses_writes_is_503_with_retry_after(
    ingest: IngestApp, admin: httpx.AsyncClient
) -> None:
    unavailable_before = requests_counted("unavailable")
    ingest.producer.unavailable = "Local: Broker transport failure"
    response = await admin.post("/api/inject/v1", json=GOOD)
    body = problem(response, 503)
    assert body["detail"] == (
        "the event log is not accepting writes: Local: Broker transport failure; nothing was accepted"
    )
    assert response.headers["retry-after"] == "5"
    assert requests_counted("unavailable") == unavailable_before + 1


async def test_trace_headers_put_a_per_recipient_reference_in_the_stored_body(
    ingest: IngestApp, acme: httpx.AsyncClient
) -> None:
    request = {
        **GOOD,
        "content": RAW,
        "recipients": [{"email": "ann@example.com"}, {"email": "bob@example.org"}],
        "trace_headers": {"header_name": "X-Acme-Ref"},
    }
    response = await acme.post("/api/inject/v1", json=request)
    assert response.status_code == 200, response.text
    ids = [t["id"] for t in response.json()["transactions"]]
    bodies = {digest: body.data for digest, body in ingest.written(BODIES, MessageBody)}
    accepted = [msg for _, msg in ingest.written(ACCEPTED, AcceptedMessage)]
    refs = []
    for msg in accepted:
        data = bodies[msg.body.sha256]
        name, value = data.split(b"\r\n", 1)[0].split(b": ", 1)
        assert name == b"X-Acme-Ref"
        assert data.endswith(RAW.replace("\n", "\r\n").encode())
        refs.append(decode_trace(value.decode()))
    assert refs == [TraceRef(ids[0], "acme", "ann@example.com"), TraceRef(ids[1], "acme", "bob@example.org")]
    assert len(bodies) == 2  # each recipient's body names its own transaction


async def test_without_trace_headers_or_with_supplemental_header_false_none_is_added(
    ingest: IngestApp, acme: httpx.AsyncClient
) -> None:
    for extra in ({}, {"trace_headers": {"supplemental_header": False}}):
        response = await acme.post("/api/inject/v1", json={**GOOD, "content": RAW, **extra})
        assert response.status_code == 200, response.text
    assert all(not body.data.startswith(b"X-KumoRef") for _, body in ingest.written(BODIES, MessageBody))


async def test_a_trace_header_name_that_is_no_field_name_is_422(ingest: IngestApp, acme: httpx.AsyncClient) -> None:
    response = await acme.post("/api/inject/v1", json={**GOOD, "trace_headers": {"header_name": "X Ref\r\nBcc: x"}})
    assert response.status_code == 422
    assert "header field name" in response.text


LONG = "x" * 999  # one octet past RFC 5322 §2.1.1's 998


@pytest.mark.parametrize(
    ("content", "dialect", "line"),
    [
        (f"Subject: long\n\nfirst\n{LONG}\n", "Static", 4),
        (f"Subject: long\r\n\r\nfirst\r\n{LONG}\r\n", "Jinja", 4),  # a line with no template syntax comes out as is
        (f"Subject: {'é' * 500}\n\nbody\n", "Static", 1),  # octets, not characters: 1009 of them
    ],
)
async def test_raw_content_with_a_line_over_998_octets_is_422_naming_the_line(
    ingest: IngestApp, acme: httpx.AsyncClient, content: str, dialect: str, line: int
) -> None:
    request = {**GOOD, "content": content, "template_dialect": dialect}
    body = problem(await acme.post("/api/inject/v1", json=request), 422)
    [error] = body["errors"]
    assert error["field"] == "content"
    assert f"content line {line} is " in error["message"]
    assert "RFC 5322 allows at most 998" in error["message"]
    assert ingest.producer.bus.topics == {}


async def test_a_substitution_that_makes_a_line_too_long_fails_its_recipient_alone(
    ingest: IngestApp, acme: httpx.AsyncClient
) -> None:
    request = {
        **GOOD,
        "recipients": [
            {"email": "short@example.com", "substitutions": {"v": "short"}},
            {"email": "long@example.com", "substitutions": {"v": LONG}},
        ],
        "content": "Subject: hi\n\nvalue: {{ v }}\n",
    }
    answer = (await acme.post("/api/inject/v1", json=request)).json()
    assert (answer["success_count"], answer["failed_recipients"]) == (1, ["long@example.com"])
    assert answer["errors"][0].startswith("long@example.com: rendered content line 3 is 1006 octets long")


async def test_a_line_of_998_octets_is_accepted(ingest: IngestApp, acme: httpx.AsyncClient) -> None:
    answer = await acme.post("/api/inject/v1", json={**GOOD, "content": f"Subject: edge\n\n{'y' * 998}\n"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["success_count"] == 1
