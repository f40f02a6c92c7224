"""The chaos run's count tells a resend after an answer (a pipeline duplicate) from one in flight at a kill,
and an accepted message that never ended from one that did: the short run's assertions can fail."""

from __future__ import annotations

from datetime import UTC, datetime

from mailstream.events.records import TransactionStatus
from tests.infra.chaos.clients import Submission
from tests.infra.chaos.tally import Kill, Receipt, attempt_of, tally

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _status(tx: str, recipient: str, status: str) -> TransactionStatus:
    return TransactionStatus(
        id=tx,
        version=3,
        status=status,
        queue="q",
        sender="app@acme.test",
        recipient=recipient,
        message_id="<m@acme.test>",
        created_at=NOW,
        updated_at=NOW,
    )


def test_a_resend_is_in_flight_only_if_a_delivery_kill_found_it_unanswered() -> None:
    subs = [Submission("http", f"r{n}@chaos.example", accepted=True) for n in range(4)]
    statuses = {f"t{n}": _status(f"t{n}", f"r{n}@chaos.example", "delivered") for n in range(3)}
    receipts = [
        Receipt("r0@chaos.example", "t0/1", 1.0),
        Receipt("r0@chaos.example", "t0/1", 3.0),  # answered at 1.5, before the kill at 2.0: pipeline
        Receipt("r1@chaos.example", "t1/1", 1.0),
        Receipt("r1@chaos.example", "t1/1", 3.0),  # unanswered at the kill: in flight
        Receipt("r2@chaos.example", "t2/1", 1.0),
        Receipt("r2@chaos.example", "t2/2", 3.0),  # a second attempt with no failure recorded
    ]
    report = tally(subs, [Kill("delivery", 2.0, 2.5)], receipts, statuses, {"t0/1": 1.5, "t1/1": 2.6})
    assert report.pipeline_duplicates == ["t0/1"]
    assert report.in_flight_duplicates == 1
    assert report.unanswered_at_kills == 2  # t1/1 and t2/1 were at the sink, unanswered, at 2.0
    assert report.redelivered == ["t2"]
    assert report.lost == ["r3@chaos.example"]  # accepted, no status, not at the sink
    assert report.ended["delivered"] == 3


def test_the_attempt_is_read_from_the_header_only() -> None:
    assert attempt_of(b"Subject: x\r\nX-Mailstream-Attempt: t1/2\r\n\r\nbody\r\n") == "t1/2"
    assert attempt_of(b"Subject: x\r\n\r\nX-Mailstream-Attempt: t1/2\r\n") is None
