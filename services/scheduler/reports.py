"""Stage 1's part in bounces and complaints received by mail (OutOfBandReport, from the gateway's bounce domains).

A report arrives after its transaction ended, when stage 1 no longer holds the message. So the partition keeps
each finished transaction's final status, deflated (`f:` keys, ~100 bytes in memory), for
`scheduler.report_window` after it ended: a report within the window is applied in the partition that owns the
transaction, in order with everything else about it; a later one is logged as unmatched.

What a report does (docs/design-decisions.md, "Out-of-band bounces and complaints"):
- a DSN: a delivered transaction becomes bounced (next status version), classified from the remote's reply;
  one already bounced, expired or cancelled keeps its status. Either way a `Bounce` event (meta oob=true).
- a complaint (any Feedback-Type but not-spam and auth-failure): the delivery stands, the status gains
  `complaint` (the Feedback-Type); a `Feedback` event.
Either then suppresses the recipient as `suppression.on_bounce` says for its bounce type (`complaint`), through
the same request path as in-band bounces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.suppression import InvalidAddress, Suppressing, normalise
from mailstream.events.handler import Writes
from mailstream.events.records import LogRecord, OutOfBandReport, SmtpResponse, Suppression, TransactionStatus
from mailstream.events.serde import decode, encode
from mailstream.events.status import next_version
from mailstream.observability.logs import get_logger
from mailstream.scheduler.packed import PackedValues
from mailstream.scheduler.queue_keys import Finished
from mailstream.scheduler.stage import Timers

log = get_logger(__name__)
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})  # feedback types that say nothing against the mail
COMPLAINT_CLASS = "Complaint"  # ours: KumoMTA's classes are of SMTP replies, and no reply is a complaint
DEFAULT_RESPONSE = SmtpResponse(code=550, enhanced_code=None, content="bounced after delivery (no diagnostic)")


@dataclass(slots=True)
class Outcome:
    status: TransactionStatus | None = None  # the next version, if the report changes it
    logs: list[LogRecord] = field(default_factory=list)
    suppression: Suppression | None = None


class FinishedBook:
    """One partition's final statuses of the transactions ended within the report window."""

    def __init__(self) -> None:
        self._statuses = PackedValues()
        self._timers = Timers()
        self._restored: list[str] = []  # timed at the first tick after a restart

    def restore(self, tx_id: str, value: bytes) -> None:
        """Not decoded (a week of a busy partition's statuses would take minutes): its timer is set at the first
        tick, a window from then, so a restart lets an entry live up to one window longer."""
        self._statuses[tx_id] = value
        self._restored.append(tx_id)

    def pack(self) -> None:
        self._statuses.pack()

    def get(self, tx_id: str) -> TransactionStatus | None:
        raw = self._statuses.get(tx_id)
        return decode(raw, TransactionStatus) if raw is not None else None

    def keep(self, status: TransactionStatus, window: timedelta, partition: int, out: Writes) -> None:
        if window <= timedelta(0):
            return
        value = encode(status)
        self._statuses[status.id] = value
        self._timers.add(status.updated_at + window, status.id)
        out.put(partition, Finished(status.id).key(), value)

    def lapse(self, now: datetime, window: timedelta, partition: int, out: Writes) -> None:
        """Forget the statuses whose window has passed (a status kept again since has a later one: skipped)."""
        for tx_id in self._restored:
            self._timers.add(now + window, tx_id)
        self._restored.clear()
        for _, tx_id in self._timers.due(now):
            status = self.get(tx_id)
            if status is None or status.updated_at + window > now:
                continue
            del self._statuses[tx_id]
            out.put(partition, Finished(tx_id).key(), None)


def apply(
    report: OutOfBandReport,
    status: TransactionStatus,
    classifier: BounceClassifier,
    rules: Suppressing,
    now: datetime,
) -> Outcome:
    """What a matched report does to its transaction: the next status (if any), the log event, the entry."""
    if report.kind == "feedback":
        return _complaint(report, status, rules, now)
    response = report.response or DEFAULT_RESPONSE
    found = classifier.classify(response.code, response.enhanced_code, response.content)
    reason = f"bounced out of band{f' by {report.remote_mta}' if report.remote_mta else ''}: " + " ".join(
        str(p) for p in (response.code, response.enhanced_code, response.content) if p
    )
    outcome = Outcome()
    if status.status == "delivered":
        outcome.status = next_version(
            status,
            now,
            status="bounced",
            bounce_classification=found.bounce_class,
            bounce_type=found.bounce_type,
            final_reason=reason,
        )
    outcome.logs.append(_log("Bounce", report, status, response, found.bounce_class, now, found.bounce_type))
    outcome.suppression = _entry(report, status, rules, found.bounce_type, found.bounce_class, response, now)
    return outcome


def _complaint(report: OutOfBandReport, status: TransactionStatus, rules: Suppressing, now: datetime) -> Outcome:
    kind = report.feedback_type or "other"
    response = SmtpResponse(code=250, enhanced_code=None, content=f"feedback report: {kind}")
    if kind in NOT_COMPLAINTS:
        return Outcome(logs=[_log("Feedback", report, status, response, None, now)])
    outcome = Outcome(logs=[_log("Feedback", report, status, response, COMPLAINT_CLASS, now, "complaint")])
    if status.complaint is None:
        outcome.status = next_version(status, now, complaint=kind)
    outcome.suppression = _entry(report, status, rules, "complaint", COMPLAINT_CLASS, response, now)
    return outcome


def _entry(
    report: OutOfBandReport,
    status: TransactionStatus,
    rules: Suppressing,
    bounce_type: str,
    bounce_class: str | None,
    response: SmtpResponse,
    now: datetime,
) -> Suppression | None:
    if not rules.suppresses(bounce_type):
        return None
    try:
        address = normalise(status.recipient)  # the transaction's: a report's own may be redacted or forged
    except InvalidAddress:
        return None
    what = "complaint" if bounce_type == "complaint" else f"{bounce_type} bounce (out of band)"
    return Suppression(
        address=address,
        tenant=status.tenant,
        reason=f"{what}: {response.content}" if bounce_type != "complaint" else f"complaint: {report.feedback_type}",
        source="complaint" if bounce_type == "complaint" else "bounce",
        bounce_classification=bounce_class,
        bounce_type=bounce_type,
        response=response,
        transaction_id=status.id,
        created_at=now,
        expires_at=rules.expires_at(bounce_type, now),
        created_by="scheduler",
    )


def _log(
    kind: str,
    report: OutOfBandReport,
    status: TransactionStatus,
    response: SmtpResponse,
    bounce_class: str | None,
    now: datetime,
    bounce_type: str | None = None,
) -> LogRecord:
    meta = {
        "oob": "true",
        "report": report.kind,
        "matched_by": report.matched_by,
        "remote_mta": report.remote_mta,
        "feedback_type": report.feedback_type,
        "user_agent": report.user_agent,
        "reported_recipient": report.recipient,
    }
    return LogRecord.model_validate(
        {
            "type": kind,
            "id": status.id,
            "sender": status.sender,
            "recipient": status.recipient,
            "queue": status.queue,
            "response": response,
            "peer_address": report.reported_by,
            "timestamp": now,
            "created": status.created_at,
            "num_attempts": status.num_attempts,
            "bounce_classification": bounce_class,
            "bounce_type": bounce_type,
            "egress_pool": status.egress_pool,
            "tenant": status.tenant,
            "campaign": status.campaign,
            "message_id": status.message_id,
            "meta": {k: v for k, v in meta.items() if v is not None},
        }
    )
