"""Delivery status notifications (RFC 3464) for mail accepted over SMTP that failed later (pure).

Whether one is owed follows RFC 3461: never to the null sender (so a notification can never cause
another), never with NOTIFY=NEVER or a NOTIFY list without FAILURE, and only for what mailstream
accepted with a 250 — HTTP submissions report through the transaction API instead.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import datetime

from mailstream.events.records import LogRecord

FAILED = ("Bounce", "Expiration", "Rejection")  # Rejection: stage 1 refused it (a draining or disabled queue)
TOLD = "told"  # LogRecord.meta key of the gateway's Rejection: the client got this failure as the DATA reply


def told_client(record: LogRecord) -> bool:
    return record.type == "Rejection" and TOLD in record.meta


def owes_notice(reception: LogRecord) -> bool:
    """Whether a failure of this accepted message is to be reported to its sender."""
    if reception.reception_protocol != "ESMTP" or not reception.sender:
        return False
    notify = reception.meta.get("dsn_notify")
    return notify is None or "FAILURE" in notify.split(",")


@dataclass(frozen=True, slots=True)
class Notice:
    reception: LogRecord  # what was accepted: sender, recipient, DSN parameters in meta
    failure: LogRecord  # the Bounce or Expiration that ended it


def _xtext_decode(text: str) -> str:
    return re.sub(r"\+([0-9A-F]{2})", lambda found: chr(int(found[1], 16)), text)


def _status_fields(notice: Notice, reporting_mta: str) -> tuple[str, str]:
    reception, failure = notice.reception, notice.failure
    envid = reception.meta.get("dsn_envid")
    per_message = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        per_message.append(f"Original-Envelope-Id: {_xtext_decode(envid)}")
    per_message.append(f"Arrival-Date: {email.utils.format_datetime(reception.timestamp)}")
    response = failure.response
    status = response.enhanced_code or ("5.4.7" if failure.type == "Expiration" else "5.0.0")
    if not status.startswith("5"):  # an expiry after temporary failures is still a permanent outcome
        status = "5" + status[1:]
    per_recipient = []
    orcpt = reception.meta.get("dsn_orcpt")
    if orcpt:
        kind, _, address = orcpt.partition(";")
        per_recipient.append(f"Original-Recipient: {kind}; {_xtext_decode(address)}")
    per_recipient += [f"Final-Recipient: rfc822; {reception.recipient}", "Action: failed", f"Status: {status}"]
    if failure.peer_address:
        per_recipient.append(f"Remote-MTA: dns; {failure.peer_address.rpartition(':')[0] or failure.peer_address}")
    diagnostic = " ".join(str(response).split())[:900]
    per_recipient += [
        f"Diagnostic-Code: smtp; {diagnostic}",
        f"Last-Attempt-Date: {email.utils.format_datetime(failure.timestamp)}",
    ]
    return "\r\n".join(per_message), "\r\n".join(per_recipient)


def build_notice(notice: Notice, *, reporting_mta: str, mailer_daemon: str, message_id: str, now: datetime) -> bytes:
    """The multipart/report message to the original sender, CRLF line endings, 7-bit."""
    reception, failure = notice.reception, notice.failure
    why = "could not be delivered in time" if failure.type == "Expiration" else "was refused"
    human = (
        f"This is the mail system at {reporting_mta}.\r\n\r\n"
        f"Your message to <{reception.recipient}> {why}.\r\n\r\n"
        f"The last reply was: {' '.join(str(failure.response).split())}\r\n"
    )
    per_message, per_recipient = _status_fields(notice, reporting_mta)
    boundary = f"=_dsn_{message_id.partition('@')[0]}"
    original_id = reception.message_id
    headers = [
        f"From: Mail Delivery System <{mailer_daemon}>",
        f"To: <{reception.sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: <{message_id}>",
        "Auto-Submitted: auto-replied",  # RFC 3834: no automatic answer to this one
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    if original_id:
        headers += [f"In-Reply-To: <{original_id}>", f"References: <{original_id}>"]
    # The accepted message is not kept beside its events: the returned headers are those the transaction
    # recorded (RET=FULL is answered with headers too, which RFC 3461 4.3 allows a server to do).
    returned = [f"Message-ID: <{original_id}>"] if original_id else []
    returned += [f"From: <{reception.sender}>", f"To: <{reception.recipient}>"]
    parts = [
        ("text/plain; charset=us-ascii", human),
        ("message/delivery-status", f"{per_message}\r\n\r\n{per_recipient}\r\n"),
        ("text/rfc822-headers", "\r\n".join(returned) + "\r\n"),
    ]
    body = "".join(f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n{content}" for kind, content in parts)
    text = (
        "\r\n".join(headers)
        + "\r\n\r\nThis is a MIME-encapsulated delivery status notification.\r\n"
        + body
        + f"--{boundary}--\r\n"
    )
    return text.encode("ascii", "replace")
