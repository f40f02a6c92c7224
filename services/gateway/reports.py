"""Reports received at a bounce domain (`gateway.bounce_domains`): parsed, tied to their transaction and handed
to stage 1 as an OutOfBandReport, never queued for delivery.

Every report is answered 250, matched or not: a bounce is never bounced (RFC 3464 §2 / RFC 5321 §4.5.5 loops),
and a sender that gets a 5xx for a report learns nothing useful. What cannot be tied to a transaction (not a
report, no trace header or VERP id, no tenant to route it by, a DSN of delays or successes) is counted by
`mailstream_gateway_reports_total{result}`, logged, and its bytes written to mail.bodies (the log line names
where), so it can be looked at without keeping a mailbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from mailstream.core.report_parse import Report, parse
from mailstream.events.bodies import put_body
from mailstream.events.producer import EventSink
from mailstream.events.records import OutOfBandReport, SmtpResponse
from mailstream.events.topics import QUEUE_COMMANDS, route_key
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
REPORTS = Counter(
    "mailstream_gateway_reports_total",
    "Reports received at bounce domains, by kind (dsn, feedback, none) and result "
    "(matched, unmatched, unparsable, ignored: a DSN without a failed recipient)",
    ["kind", "result"],
)


@dataclass(frozen=True, slots=True)
class ReportDestination:
    """An accepted recipient at a bounce domain, in place of a policy.Destination."""

    domain: str
    tenant: str | None  # the domain's, for a report matched by its VERP address alone


def report_record(
    report: Report, destinations: Sequence[ReportDestination], peer: str, now: datetime
) -> tuple[OutOfBandReport | None, str]:
    """The record a parsed report becomes, or None and why not."""
    tx_id = report.transaction_id
    if tx_id is None:
        return None, "unmatched"
    tenant = report.ref.tenant if report.ref is not None else next((d.tenant for d in destinations if d.tenant), None)
    if tenant is None:
        return None, "unmatched"  # no route key: the transaction's partition cannot be found
    response, recipient, remote = None, report.original_recipient, None
    if report.kind == "dsn":
        failed = report.failed()
        if not failed:
            return None, "ignored"  # a delay or success notice: the transaction's status stands
        first = failed[0]
        response = SmtpResponse(code=first.code, enhanced_code=first.status, content=first.diagnostic)
        recipient, remote = first.recipient, first.remote_mta
    record = OutOfBandReport(
        transaction_id=tx_id,
        tenant=tenant,
        kind=report.kind,
        recipient=recipient,
        response=response,
        remote_mta=remote,
        feedback_type=report.feedback_type,
        user_agent=report.user_agent,
        matched_by="trace_header" if report.ref is not None else "verp",
        reported_by=peer,
        received_at=now,
    )
    return record, "matched"


async def receive(
    producer: EventSink,
    data: bytes,
    to: Sequence[str],
    destinations: Sequence[ReportDestination],
    *,
    peer: str,
    header_name: str,
    now: datetime,
    session: str,
) -> str:
    """Hand a report to stage 1 (or set it aside); returns the result counted. KafkaUnavailable propagates."""
    report = parse(data, to, header_name=header_name)
    if report is None:
        record, result = None, "unparsable"
    else:
        record, result = report_record(report, destinations, peer, now)
    kind = report.kind if report is not None else "none"
    REPORTS.labels(kind, result).inc()
    if record is not None:
        key = route_key(record.tenant, "")
        await producer.send(QUEUE_COMMANDS, key, record)
        log.info("report", session=session, kind=kind, transaction=record.transaction_id, by=record.matched_by)
        return result
    body = await put_body(producer, data)
    log.warning(
        "report_unmatched",
        session=session,
        kind=kind,
        result=result,
        peer=peer,
        to=list(to),
        kept=f"{body.topic}/{body.partition}/{body.offset}",
        size=len(data),
    )
    return result
