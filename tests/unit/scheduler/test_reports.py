"""Stage 1 applies bounces and complaints received by mail to the finished transactions they name: the status,
the log event, the suppression list; within `scheduler.report_window`, across a restart, and no later.

The stage runs on the in-memory twin; responses and reports are written as the worker and the gateway write them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mailstream.config.model import parse_config
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryProcessor
from mailstream.events.records import (
    AttemptOutcome,
    DeliveryResponse,
    LogRecord,
    OutOfBandReport,
    ReadyMessage,
    SmtpResponse,
    Suppression,
    TransactionStatus,
)
from mailstream.events.serde import decode, encode
from mailstream.events.topics import (
    ACCEPTED,
    EVENTS,
    PARTITIONS,
    QUEUE_COMMANDS,
    QUEUE_STATE,
    READY,
    RESPONSES,
    STATUS,
    SUPPRESSIONS,
    route_key,
)
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_keys import Finished
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=2)
OK = SmtpResponse(code=250, enhanced_code="2.0.0", content="queued as 4Zt7Qk")
USER_UNKNOWN = SmtpResponse(code=550, enhanced_code="5.1.1", content="<ann@example.com>: User unknown")
BASE: dict[str, Any] = {
    "egress": {"sources": [{"name": "s1"}], "pools": [{"name": "p", "entries": [{"name": "s1"}]}]},
    "queues": {"egress_pool": "p"},
}
WINDOW: dict[str, Any] = {"scheduler": {"report_window": "7d"}}  # off by default


class Stage1:
    def __init__(self, extra: dict[str, Any] | None = None, changelog: dict[int, dict[bytes, bytes]] | None = None):
        self.bus = MemoryBus(PARTITIONS)
        self.proc = MemoryProcessor(
            self.bus,
            INPUTS,
            QueueStage(Policies(parse_config({**BASE, **(extra or {})}, env={}))),
            resume_from=changelog,
            changelog=QUEUE_STATE,
        )

    def deliver(self, recipient: str = "ann@example.com", outcome: AttemptOutcome = "DELIVERED") -> str:
        msg = fixtures.accepted().model_copy(
            update={"id": f"{len(self.bus.read(ACCEPTED.name)):032x}", "recipient": recipient, "tenant": "acme"}
        )
        msg = msg.model_copy(update={"send_at": None, "queue": "acme@example.com", "received_at": T0})
        key = route_key(msg.tenant, msg.queue).encode()
        self.bus.send(ACCEPTED.name, key, encode(msg))
        self.proc.step(T0)
        assert [decode(r.value, ReadyMessage).id for r in self.bus.read(READY.name) if READY.carries(r.value)][
            -1
        ] == msg.id
        answer = DeliveryResponse(
            id=msg.id,
            attempt=1,
            attempt_id=f"{msg.id}/1",
            queue=msg.queue,
            outcome=outcome,
            response=OK if outcome == "DELIVERED" else USER_UNKNOWN,
            egress_source="s1",
            egress_path="s1->example.com",
            started_at=T0,
            completed_at=T0,
        )
        self.bus.send(RESPONSES.name, key, encode(answer))
        self.proc.step(T0)
        self.proc.step(T0)
        return msg.id

    def report(self, tx_id: str, at: datetime = LATER, **fields: Any) -> None:
        record = OutOfBandReport.model_validate(
            {
                "transaction_id": tx_id,
                "tenant": "acme",
                "kind": "dsn",
                "recipient": "ann@example.com",
                "response": USER_UNKNOWN,
                "remote_mta": "mailstore.example.com",
                "matched_by": "trace_header",
                "reported_by": "192.0.2.25",
                "received_at": at,
                **fields,
            }
        )
        self.bus.send(QUEUE_COMMANDS.name, b"tenant:acme", encode(record))
        self.proc.step(at)  # the report, and the suppression request it sends
        self.proc.step(at)  # the owner applies the request

    def latest(self, tx_id: str) -> TransactionStatus:
        return [s for s in self.statuses() if s.id == tx_id][-1]

    def statuses(self) -> list[TransactionStatus]:
        return [decode(r.value, TransactionStatus) for r in self.bus.read(STATUS.name)]

    def events(self, kind: str) -> list[LogRecord]:
        return [e for r in self.bus.read(EVENTS.name) if (e := decode(r.value, LogRecord)).type == kind]

    def suppressed(self) -> list[Suppression]:
        return [
            e for r in self.bus.read(SUPPRESSIONS.name) if isinstance(e := SUPPRESSIONS.decode(r.value), Suppression)
        ]


def test_a_delivered_message_that_bounces_later_becomes_bounced_logged_and_suppressed() -> None:
    stage = Stage1(WINDOW)
    tx = stage.deliver()
    delivered = stage.latest(tx)
    assert delivered.status == "delivered"
    stage.report(tx)
    bounced = stage.latest(tx)
    assert (bounced.status, bounced.version, bounced.updated_at) == ("bounced", delivered.version + 1, LATER)
    assert (bounced.bounce_type, bounced.bounce_classification) == ("hard", "InvalidRecipient")
    assert bounced.final_reason == (
        "bounced out of band by mailstore.example.com: 550 5.1.1 <ann@example.com>: User unknown"
    )
    assert bounced.attempts == delivered.attempts  # the delivery attempt stays on record
    [event] = stage.events("Bounce")
    assert (event.id, event.response, event.peer_address, event.bounce_classification) == (
        tx,
        USER_UNKNOWN,
        "192.0.2.25",
        "InvalidRecipient",
    )
    assert event.bounce_type == "hard"
    assert event.meta == {
        "oob": "true",
        "report": "dsn",
        "matched_by": "trace_header",
        "remote_mta": "mailstore.example.com",
        "reported_recipient": "ann@example.com",
    }
    [entry] = stage.suppressed()
    assert (entry.address, entry.tenant, entry.source, entry.bounce_type, entry.transaction_id) == (
        "ann@example.com",
        "acme",
        "bounce",
        "hard",
        tx,
    )


def test_a_complaint_keeps_the_delivery_flags_the_status_and_suppresses() -> None:
    stage = Stage1(WINDOW)
    tx = stage.deliver()
    stage.report(tx, kind="feedback", response=None, feedback_type="abuse", user_agent="Yahoo!-Mail-Feedback/2.0")
    flagged = stage.latest(tx)
    assert (flagged.status, flagged.complaint, flagged.bounce_type) == ("delivered", "abuse", None)
    [event] = stage.events("Feedback")
    assert (event.meta["feedback_type"], event.meta["user_agent"]) == ("abuse", "Yahoo!-Mail-Feedback/2.0")
    assert (event.bounce_classification, event.bounce_type) == ("Complaint", "complaint")  # issue 10 item 7
    [entry] = stage.suppressed()
    assert (entry.source, entry.bounce_type, entry.reason) == ("complaint", "complaint", "complaint: abuse")
    assert entry.bounce_classification == "Complaint"
    versions = len(stage.statuses())
    stage.report(tx, kind="feedback", response=None, feedback_type="abuse")  # a second complaint
    assert len(stage.statuses()) == versions  # already flagged: no new version
    assert len(stage.events("Feedback")) == 2


def test_a_not_spam_report_is_logged_and_changes_nothing_else() -> None:
    stage = Stage1(WINDOW)
    tx = stage.deliver()
    versions = len(stage.statuses())
    stage.report(tx, kind="feedback", response=None, feedback_type="not-spam")
    assert len(stage.statuses()) == versions
    [event] = stage.events("Feedback")
    assert (event.bounce_classification, event.bounce_type) == (None, None)  # not a complaint
    assert stage.suppressed() == []


def test_a_bounce_of_what_already_bounced_keeps_the_first_bounce() -> None:
    stage = Stage1(
        {**WINDOW, "suppression": {"on_bounce": {"complaint": "forever"}}}
    )  # hard bounces do not suppress here
    tx = stage.deliver(outcome="PERMANENT")
    versions = len(stage.statuses())
    stage.report(tx)
    assert len(stage.statuses()) == versions
    assert len(stage.events("Bounce")) == 2  # the in-band one and the report
    assert stage.suppressed() == []  # as the tenant's rules say


def test_reports_apply_after_a_restart_within_the_window_and_not_after_it() -> None:
    stage = Stage1({"scheduler": {"report_window": "1d"}})
    tx = stage.deliver()
    assert any(Finished(tx).key() in part for part in stage.proc.out.changelog.values())
    restarted = Stage1({"scheduler": {"report_window": "1d"}}, changelog=stage.proc.out.changelog)
    restarted.report(tx)
    assert restarted.latest(tx).status == "bounced"
    restarted.proc.tick(LATER + timedelta(days=1))  # a day after its last version: forgotten
    assert not any(Finished(tx).key() in part for part in restarted.proc.out.changelog.values())
    restarted.report(tx, kind="feedback", response=None, feedback_type="abuse", at=LATER + timedelta(days=1))
    assert restarted.events("Feedback") == []  # unmatched: logged only


def test_an_unknown_transaction_or_a_window_of_zero_changes_nothing() -> None:
    stage = Stage1({"scheduler": {"report_window": "0s"}})
    tx = stage.deliver()
    before = len(stage.bus.read(STATUS.name)), len(stage.bus.read(EVENTS.name))
    stage.report(tx)
    stage.report("f" * 32)
    assert (len(stage.bus.read(STATUS.name)), len(stage.bus.read(EVENTS.name))) == before
    assert stage.suppressed() == []


def test_a_restored_status_is_forgotten_a_window_after_the_first_tick_of_its_new_owner() -> None:
    stage = Stage1({"scheduler": {"report_window": "1d"}})
    tx = stage.deliver()
    restarted = Stage1({"scheduler": {"report_window": "1d"}}, changelog=stage.proc.out.changelog)
    restarted.proc.tick(T0 + timedelta(hours=12))  # restored undecoded: timed from here
    restarted.proc.tick(T0 + timedelta(days=1, hours=11))
    assert any(Finished(tx).key() in part for part in restarted.proc.out.changelog.values())
    restarted.proc.tick(T0 + timedelta(days=1, hours=12))
    assert not any(Finished(tx).key() in part for part in restarted.proc.out.changelog.values())
