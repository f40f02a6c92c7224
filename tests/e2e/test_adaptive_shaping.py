"""Adaptive shaping through the real pipeline: a sink that starts answering `421 4.7.0 try later` mid-run fires
the rules; the path (or the tenant's queues) is suspended for the rule's duration, visible in /api/queue/servers and
/api/admin/suspensions, then the action ends by itself and delivery resumes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import ACME_KEY, Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
TRY_LATER = "421 4.7.0 try later"
PATH_SUSPENSION = 8.0  # seconds: long enough to see held mail, short enough for a test
TENANT_SUSPENSION = 6.0


@pytest.fixture(scope="module")
def sink() -> Iterator[CaptureSink]:
    s = CaptureSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shaped(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    site = f"{sink.address[0]}:*"  # the smarthost is the site of every path here
    rules = [
        {
            "name": "try-later-path",
            "codes": [421],
            "enhanced_codes": ["4.7.*"],
            "regex": "try later",
            "sites": [site],
            "domains": ["example.com"],
            "action": "suspend_path",
            "duration": f"{PATH_SUSPENSION}s",
        },
        {
            "name": "try-later-tenant",
            "codes": [421],
            "domains": ["tenant-shaped.test"],
            "tenants": ["acme"],
            "action": "suspend_tenant",
            "duration": f"{TENANT_SUSPENSION}s",
        },
    ]
    with running_stack(
        kafka_bootstrap,
        sink.address,
        tmp_path_factory.mktemp("shaping"),
        queues={"retry_interval": "2s", "max_retry_interval": "2s"},
        shaping={"rules": rules},
    ) as stack:
        yield stack


def submit(stack: Stack, rcpt: str) -> str:
    with stack.client(ACME_KEY) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "sender@acme.test",
                "recipients": [{"email": rcpt}],
                "content": {"subject": "shaping", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    return str(r.json()["transactions"][0]["id"])


def poll(what: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not seen within {timeout}s")


def shaping_on_servers(stack: Stack) -> list[dict[str, Any]]:
    with stack.client() as client:
        rows = client.get("/api/queue/servers").json()["data"]
    return [s for row in rows for s in row["shaping"]]


def suspensions(stack: Stack, key: str) -> dict[str, Any]:
    with stack.client(key) as client:
        r = client.get("/api/admin/suspensions")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def received_at(sink: CaptureSink, rcpt: str) -> float:
    [when] = [m.received_at for m in sink.messages if rcpt in m.rcpt_tos]
    return when


def test_a_421_suspends_the_tenants_queues_for_the_domain_until_the_rule_ends(shaped: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    sink.handler.script[f"tsusp-{tag}"] = TRY_LATER  # only these recipients are refused
    first = submit(shaped, f"tsusp-{tag}@tenant-shaped.test")
    status = shaped.wait_status(first, {"suspended", "deferred", "delivered", "bounced"})
    assert status["status"] == "suspended"  # the message that got the reply is held with its queues
    assert status["attempts"][0]["response"]["code"] == 421

    listed = poll(
        lambda: [s for s in suspensions(shaped, ACME_KEY)["data"] if s["issued_by"] == "shaping:try-later-tenant"]
    )
    [held] = listed
    assert (held["tenant"], held["domain"], held["state"]) == ("acme", "tenant-shaped.test", "suspended")
    assert held["reason"] == f"shaping rule try-later-tenant: {TRY_LATER}"
    until = datetime.fromisoformat(held["until"]).timestamp()
    [control] = [c for c in suspensions(shaped, ACME_KEY)["shaping"] if c["rule"] == "try-later-tenant"]
    assert control["action"] == "suspend_tenant"

    sink.handler.script.pop(f"tsusp-{tag}")
    second = submit(shaped, f"tsusp2-{tag}@tenant-shaped.test")  # accepted into the suspended queues
    assert shaped.wait_status(second, {"suspended", "delivered"})["status"] == "suspended"
    for tx in (first, second):
        assert shaped.wait_status(tx, {"delivered", "bounced", "expired"}, timeout=60)["status"] == "delivered"
    assert (
        received_at(sink, f"tsusp2-{tag}@tenant-shaped.test") >= until - 0.5
    )  # not before it ended (clock: 1 s ticks)
    poll(lambda: not [s for s in suspensions(shaped, ACME_KEY)["data"] if s["issued_by"].startswith("shaping:")])


def test_a_421_mid_run_suspends_the_path_then_delivery_resumes(shaped: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    before = submit(shaped, f"before-{tag}@example.com")
    assert shaped.wait_status(before, {"delivered", "deferred", "bounced"})["status"] == "delivered"
    assert shaping_on_servers(shaped) == []

    sink.handler.script[""] = TRY_LATER  # the destination starts deferring everything
    refused = submit(shaped, f"refused-{tag}@example.com")
    status = shaped.wait_status(refused, {"deferred", "delivered", "bounced"})
    assert status["status"] == "deferred"
    [shown] = poll(lambda: shaping_on_servers(shaped))
    assert (shown["rule"], shown["action"], shown["reason"]) == ("try-later-path", "suspend_path", TRY_LATER)
    assert shown["path"].endswith(f"->{sink.address[0]}:{sink.address[1]}")
    until = datetime.fromisoformat(shown["until"]).timestamp()
    assert [c["id"] for c in suspensions(shaped, ACME_KEY)["shaping"]] == [shown["id"]]

    sink.handler.script.pop("")  # it would accept again, but the path is suspended until `until`
    held = submit(shaped, f"held-{tag}@example.com")
    assert shaped.wait_status(held, {"ready", "delivered"})["status"] == "ready"  # waiting at stage 2
    for tx in (held, refused):  # the retry of the refused one waits for the path too
        assert shaped.wait_status(tx, {"delivered", "bounced", "expired"}, timeout=60)["status"] == "delivered"
    assert received_at(sink, f"held-{tag}@example.com") >= until - 0.5
    assert received_at(sink, f"refused-{tag}@example.com") >= until - 0.5
    assert shaping_on_servers(shaped) == []  # ended by itself
