"""Accepted mail reaches the sink even when the scheduler or a delivery worker is SIGKILLed and restarted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(kafka_bootstrap, sink.address, tmp_path) as s:
        yield s


def _submit(stack: Stack, recipients: list[str]) -> list[str]:
    with stack.client() as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "s@acme.test",
                "recipients": [{"email": r} for r in recipients],
                "content": {"subject": "restart", "text_body": "must arrive"},
            },
        )
    assert r.status_code == 200, r.text
    assert r.json()["success_count"] == len(recipients)
    return [t["id"] for t in r.json()["transactions"]]


def _captured(sink: CaptureSink, recipients: list[str], timeout: float = 90.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    wanted = set(recipients)
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {r: 0 for r in recipients}
        for m in sink.messages:
            for r in m.rcpt_tos:
                if r in wanted:
                    counts[r] += 1
        if all(counts.values()):
            return counts
        time.sleep(0.2)
    return counts


@pytest.mark.parametrize("victim", ["scheduler", "delivery"])
def test_accepted_mail_survives_a_killed_service(own_stack: Stack, sink: CaptureSink, victim: str) -> None:
    tag = uuid.uuid4().hex[:8]
    before = [f"before-{tag}-{i}@example.com" for i in range(10)]
    during = [f"during-{tag}-{i}@example.com" for i in range(10)]
    _submit(own_stack, before)
    own_stack.kill(victim)
    ids = _submit(own_stack, during)  # accepted while the service is down
    own_stack.start_service(victim)
    counts = _captured(sink, before + during)
    assert all(counts.values()), f"never delivered: {[r for r, n in counts.items() if not n]}"
    assert max(counts.values()) == 1, f"sent twice: {[r for r, n in counts.items() if n > 1]}"
    for tx in ids:
        assert own_stack.wait_status(tx, {"delivered"})["status"] == "delivered"
