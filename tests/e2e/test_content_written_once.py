"""Invariant 4: a message's content is written to Kafka once. State and changelogs hold a reference,
so everything written per delivered message stays within 1.3 x its size."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import ACME_KEY, Stack
from tests.infra.topics import bytes_written, topic_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SIZE = 64 * 1024
COUNT = 12


def raw_message(tag: str, n: int) -> str:
    head = f"From: news@acme.test\r\nTo: r{n}@example.com\r\nSubject: written once {tag}/{n}\r\n\r\n"
    # Random text so that no body compresses away or repeats another's.
    lines = (os.urandom(30).hex() + "\r\n" for _ in range(SIZE // 62 + 1))
    return (head + "".join(lines))[:SIZE]


def test_bytes_written_per_delivered_message_stay_within_1_3_times_its_size(stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:8]
    before = topic_offsets(stack.bootstrap, ("mail.",))
    ids = []
    with stack.client(ACME_KEY) as client:
        for n in range(COUNT):
            r = client.post(
                "/api/inject/v1",
                json={
                    "envelope_sender": f"bounces-{tag}@acme.test",
                    "template_dialect": "Static",
                    "recipients": [{"email": f"size-{tag}-{n}@example.com"}],
                    "content": raw_message(tag, n),
                },
            )
            assert r.status_code == 200, r.text
            ids += [t["id"] for t in r.json()["transactions"]]
    for tx_id in ids:
        assert stack.wait_status(tx_id, {"delivered", "bounced", "expired"}, key=ACME_KEY)["status"] == "delivered"
    time.sleep(3)  # the stages' trailing writes: the last dispatch notices, counters and snapshots
    written = bytes_written(stack.bootstrap, before, topic_offsets(stack.bootstrap, ("mail.",)))

    delivered = [m for m in sink.messages if any(f"size-{tag}-" in r for r in m.rcpt_tos)]
    assert len(delivered) == COUNT
    size = sum(len(m.data) for m in delivered) / COUNT
    per_message = sum(written.values()) / COUNT
    busiest = sorted(written.items(), key=lambda kv: -kv[1])[:4]
    print(f"\n{per_message:.0f} B written per {size:.0f} B message ({per_message / size:.2f}x): {busiest}")
    assert written["mail.bodies"] / COUNT < 1.05 * size, f"bodies written more than once: {busiest}"
    assert per_message <= 1.3 * size, f"{per_message:.0f} B written per {size:.0f} B message: {busiest}"
