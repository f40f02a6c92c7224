"""Templates cost what the bounds allow (issue #9): hostile ones are refused with a 4xx naming the recipient or
template, the event loop keeps answering while they render, and a request cannot expand past its limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailstream.ingest.inject_request import InjectRequest
from mailstream.ingest.message_builder import needs_worker
from tests.infra.ingest_app import IngestApp, problem

GOOD: dict[str, Any] = {"envelope_sender": "s@acme.test", "recipients": [{"email": "r@example.com"}]}
SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[IngestApp]:
    built = IngestApp.build(
        tmp_path / "status.sqlite3",
        template_time_limit="1s",
        max_message_size=1024 * 1024,
        expansion_limit=4 * 1024 * 1024,
        template_workers=1,
    )
    yield built
    built.close()


def builder(**content: str) -> dict[str, Any]:
    return {**GOOD, "content": {"subject": "s", "text_body": "t", **content}}


@pytest.mark.parametrize(
    ("template", "plain"),
    [
        ("Hi {{ name }}, {{ user.city | default('') | upper }}{% if vip %} (VIP){% endif %}", True),
        ("{{ to_header }} {{ items[0] ~ email }} {{ 'x' if a is defined else 'y' }}", True),
        ("{{ 9 ** 99 }}", False),
        ("{% for i in items %}{{ i }}{% endfor %}", False),
        ("{{ name.center(80) }}", False),
        ("{{ items | join(',') }}", False),
    ],
)
def test_only_substitution_stays_in_process(template: str, plain: bool) -> None:
    request = InjectRequest.model_validate(builder(text_body=template))
    assert needs_worker(request) is not plain


async def test_big_integer_arithmetic_fails_its_recipient_at_once(bounded: IngestApp) -> None:
    async with bounded.client() as admin:
        started = time.monotonic()
        response = await asyncio.wait_for(admin.post("/api/inject/v1", json=builder(subject="{{ 9 ** 9999999 }}")), 20)
    assert time.monotonic() - started < 5
    answer = response.json()
    assert answer["failed_recipients"] == ["r@example.com"]
    assert answer["errors"][0].startswith("r@example.com: content.subject: cannot render template: SecurityError")
    assert bounded.producer.bus.topics == {}


async def test_a_template_that_spins_is_refused_and_the_loop_answers_meanwhile(tmp_path: Path) -> None:
    # A time limit long beside anything the loop does, so that "answered while it rendered" is not a race.
    patient = IngestApp.build(tmp_path / "status.sqlite3", template_time_limit="4s", template_workers=1)
    try:
        async with patient.client() as admin:
            slow = asyncio.create_task(admin.post("/api/inject/v1", json=builder(text_body=SPIN)))
            await asyncio.sleep(0.3)
            assert (await admin.get("/healthz")).status_code == 200
            assert not slow.done()  # the render is in a worker process, not on the event loop
            body = problem(await asyncio.wait_for(slow, 20), 422)
            assert body["errors"][0]["field"] == "recipients[0]"
            assert "longer than 4 s" in body["errors"][0]["message"]
            # The worker that was stopped is replaced: the next templated request renders.
            loop = "{% for i in range(3) %}{{ i }}{% endfor %}"
            again = await admin.post("/api/inject/v1", json=builder(text_body=loop))
    finally:
        patient.close()
    assert again.json()["success_count"] == 1
    assert len(patient.producer.records("mail.accepted")) == 1


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 100000000 }}",  # refused before it is computed
        "{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}",  # counted as it is output
        "{{ name.ljust(50000000) }}",  # one C call: the worker's limits
    ],
)
async def test_output_past_the_message_limit_fails_that_recipient(bounded: IngestApp, template: str) -> None:
    request = {**builder(text_body=template), "recipients": [{"email": "a@example.com"}]}
    async with bounded.client() as admin:
        response = await asyncio.wait_for(admin.post("/api/inject/v1", json=request), 20)
    answer = response.json()
    assert answer["failed_recipients"] == ["a@example.com"], answer
    assert "content.text_body" in answer["errors"][0] or "bytes" in answer["errors"][0]
    assert bounded.producer.bus.topics == {}


async def test_a_template_that_needs_more_memory_than_allowed_is_refused(tmp_path: Path) -> None:
    small = IngestApp.build(
        tmp_path / "status.sqlite3", template_memory_limit=256 * 1024 * 1024, max_message_size=63 * 1024 * 1024
    )
    try:
        async with small.client() as admin:
            response = await asyncio.wait_for(
                admin.post("/api/inject/v1", json=builder(text_body="{{ name.ljust(400000000) }}")), 20
            )
            later = await admin.post("/api/inject/v1", json=builder(text_body="{{ [1, 2] | join('-') }}"))
    finally:
        small.close()
    assert response.status_code in (200, 422), response.text
    assert "memory" in response.text
    assert later.json()["success_count"] == 1


async def test_a_request_that_expands_past_its_limit_is_413(bounded: IngestApp) -> None:
    # 2.6 KB of request, ~6 MB of messages: plain substitution, in process.
    request = {
        **GOOD,
        "substitutions": {"k": "x" * 2000},
        "content": {"subject": "s", "text_body": "{{ k }}" * 300},
        "recipients": [{"email": f"r{i}@example.com"} for i in range(10)],
    }
    async with bounded.client() as admin:
        body = problem(await admin.post("/api/inject/v1", json=request), 413)
        assert "fewer recipients" in body["detail"]
        # The same through a worker (a loop): refused as it streams back.
        looped = {**request, "content": {"subject": "s", "text_body": "{% for i in range(300) %}{{ k }}{% endfor %}"}}
        problem(await admin.post("/api/inject/v1", json=looped), 413)
    assert bounded.producer.bus.topics == {}


async def test_templates_render_the_same_in_a_worker(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    request = {
        **GOOD,
        "substitutions": {"items": ["a", "b"]},
        "content": {
            "subject": "{{ name | upper }}",
            "text_body": "{% for i in items %}{{ i }}-{% endfor %}{{ 6 * 7 }}",
        },
        "recipients": [{"email": "r@example.com", "name": "Ann"}, {"email": "no-at-sign"}],
    }
    answer = (await admin.post("/api/inject/v1", json=request)).json()
    assert (answer["success_count"], answer["failed_recipients"]) == (1, ["no-at-sign"])
    [record] = ingest.producer.records("mail.bodies")
    assert b"Subject: ANN" in record.value
    assert b"a-b-42" in record.value


async def test_a_worker_is_not_shared_while_a_request_past_its_deadline_still_renders(tmp_path: Path) -> None:
    built = IngestApp.build(
        tmp_path / "status.sqlite3", request_deadline="1s", template_time_limit="1.5s", template_workers=1
    )
    try:
        async with built.client() as admin:
            spun = await admin.post("/api/inject/v1", json=builder(text_body=SPIN))
            # Its worker is still rendering (until 1.5 s): the next request waits for it, and is not handed
            # what the first job answers.
            loop = "{% for i in range(2) %}{{ i }}{% endfor %}"
            after = await admin.post("/api/inject/v1", json=builder(text_body=loop))
    finally:
        built.close()
    assert problem(spun, 503)["detail"].endswith("nothing was accepted")
    assert after.status_code == 200, after.text
    assert after.json()["success_count"] == 1
