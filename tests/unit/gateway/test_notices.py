"""Delivery status notifications: who gets one, when, and what it says."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from mailstream.events.processor import Output
from mailstream.events.records import AcceptedMessage, BodyRef, LogRecord, SmtpResponse
from mailstream.events.serde import decode
from mailstream.events.topics import ACCEPTED, EVENTS, NOTICE_STATE, STATUS
from mailstream.gateway.dsn import TOLD, Notice, build_notice, owes_notice
from mailstream.gateway.notifier import Notifier, notice_id
from tests.infra.gateway import delivery_status

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
HOLD = timedelta(seconds=15)


def reception(
    tx: str = "tx1", *, sender: str = "app@acme.test", protocol: str = "ESMTP", meta: dict[str, str] | None = None
) -> LogRecord:
    return LogRecord(
        type="Reception",
        id=tx,
        sender=sender,
        recipient="bob@example.com",
        queue="acme@example.com",
        response=SmtpResponse(code=250, enhanced_code="2.0.0", content="accepted"),
        timestamp=T0,
        created=T0,
        reception_protocol=protocol,
        tenant="acme",
        message_id="orig@acme.test",
        meta=meta or {},
    )


def ended(kind: str, at: datetime, tx: str = "tx1") -> LogRecord:
    response = SmtpResponse(code=550, enhanced_code="5.1.1", content="bob: no such user", command="RCPT")
    return reception(tx).model_copy(
        update={"type": kind, "timestamp": at, "response": response, "peer_address": "192.0.2.7:25"}
    )


class Bodies:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def __call__(self, data: bytes) -> BodyRef:
        self.written.append(data)
        return BodyRef(topic="mail.bodies", partition=0, offset=len(self.written), sha256="0" * 64, size=len(data))


def run(records: list[LogRecord], *, tick_at: datetime | None = None) -> tuple[Output, Bodies]:
    bodies = Bodies()
    notifier = Notifier(reporting_mta="gw.test", hold=HOLD, write_body=bodies)
    notifier.assigned(0, {})
    out = Output(NOTICE_STATE.name)
    for record in records:
        notifier.on_record(0, EVENTS.name, record.id.encode(), EVENTS.encode(record), record.timestamp, out)
    if tick_at is not None:
        notifier.on_tick(tick_at, out)
    return out, bodies


def notices(out: Output) -> list[AcceptedMessage]:
    return [decode(w.value, AcceptedMessage) for w in out.writes if w.topic == ACCEPTED.name and w.value]


def test_a_bounce_after_the_cut_through_window_sends_one_notice_through_the_pipeline() -> None:
    out, bodies = run([reception(), ended("Bounce", T0 + timedelta(minutes=5))])
    [notice] = notices(out)
    assert (notice.sender, notice.recipient, notice.id) == ("", "app@acme.test", notice_id("tx1"))
    assert (notice.tenant, notice.queue) == ("acme", "acme@acme.test")
    assert {w.topic for w in out.writes} >= {ACCEPTED.name, STATUS.name, EVENTS.name}
    assert len(bodies.written) == 1
    state = [w for w in out.writes if w.topic == NOTICE_STATE.name]
    assert [w.value is None for w in state] == [False, True]  # kept, then forgotten with the notice


def test_a_failure_inside_the_window_waits_and_a_rejection_cancels_it() -> None:
    out, _ = run([reception(), ended("Bounce", T0 + timedelta(seconds=2))], tick_at=T0 + timedelta(seconds=10))
    assert notices(out) == []  # held: cut-through may have told the client
    out, _ = run([reception(), ended("Bounce", T0 + timedelta(seconds=2))], tick_at=T0 + HOLD)
    assert len(notices(out)) == 1  # nobody told the client: the notice goes
    told = ended("Rejection", T0 + timedelta(seconds=3)).model_copy(update={"meta": {TOLD: "DATA reply"}})
    out, _ = run([reception(), ended("Bounce", T0 + timedelta(seconds=2)), told], tick_at=T0 + HOLD)
    assert notices(out) == []  # the client was given the failure as the DATA reply


def test_a_message_the_scheduler_refused_after_acceptance_is_reported() -> None:
    out, _ = run([reception(), ended("Rejection", T0 + timedelta(minutes=1))])  # e.g. its queue began draining
    assert len(notices(out)) == 1


@pytest.mark.parametrize(
    "first",
    [
        reception(protocol="HTTP"),  # HTTP submissions report through the transaction API
        reception(sender=""),  # never to the null sender
        reception(meta={"dsn_notify": "NEVER"}),
        reception(meta={"dsn_notify": "SUCCESS,DELAY"}),
    ],
)
def test_no_notice_is_owed(first: LogRecord) -> None:
    assert not owes_notice(first)
    out, _ = run([first, ended("Bounce", T0 + timedelta(minutes=5))])
    assert notices(out) == []
    assert out.writes == []


def test_delivered_mail_leaves_no_state() -> None:
    delivered = ended("Delivery", T0 + timedelta(seconds=1))
    out, _ = run([reception(), delivered, ended("Bounce", T0 + timedelta(minutes=5))])
    assert notices(out) == []
    assert [w.value is None for w in out.writes] == [False, True]


def test_the_report_follows_rfc_3464() -> None:
    first = reception(meta={"dsn_envid": "QQ+2B314", "dsn_orcpt": "rfc822;Bob+40example.com"})
    data = build_notice(
        Notice(first, ended("Expiration", T0 + timedelta(days=5))),
        reporting_mta="gw.test",
        mailer_daemon="MAILER-DAEMON@gw.test",
        message_id="n1@gw.test",
        now=T0 + timedelta(days=5),
    )
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_param("report-type") == "delivery-status"
    assert message["In-Reply-To"] == "<orig@acme.test>"
    assert message["Auto-Submitted"] == "auto-replied"
    human, _, headers = message.iter_parts()
    assert (human.get_content_type(), headers.get_content_type()) == ("text/plain", "text/rfc822-headers")
    per_message, per_recipient = delivery_status(message)
    assert per_message["Reporting-MTA"] == "dns; gw.test"
    assert per_message["Original-Envelope-Id"] == "QQ+314"
    assert per_recipient["Original-Recipient"] == "rfc822; Bob@example.com"
    assert per_recipient["Final-Recipient"] == "rfc822; bob@example.com"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 bob: no such user"
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
