"""Reports that come back by mail, parsed: delivery status notifications (RFC 3464) and feedback reports
(RFC 5965, ARF). Pure: bytes in, a `Report` or None out, never an exception for what a peer sent.

A report names the transaction it is about by the trace header (core.trace_header) in the message or
headers it returns (`message/rfc822`, `text/rfc822-headers`, `message/rfc822-headers`), else by a VERP
envelope address the report was sent to (a transaction id, 32 hex digits, in its local part, as an egress
source's `envelope_sender` pattern `b-{id}@bounces.example` makes). Reports that do not follow the MIME
structure (some older MTAs) are still searched for a trace header, since one quoted anywhere is ours.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from mailstream.core.trace_header import DEFAULT_NAME, TraceRef, decode

ReportKind = Literal["dsn", "feedback"]
_VERP_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_REPLY = re.compile(r"^\s*([245]\d\d)(?:[ -]+([245]\.\d{1,3}\.\d{1,3}))?\b[ -]*(.*)$", re.DOTALL)
_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_RETURNED = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
MAX_TEXT = 1000  # of a diagnostic or a feedback summary: enough to classify, bounded for the log


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One recipient's block of a DSN: what happened to it and what the remote server said."""

    recipient: str | None  # Final-Recipient's address, or Original-Recipient's
    action: str  # failed, delayed, delivered, relayed, expanded (lower case)
    status: str | None  # the enhanced status code, e.g. 5.1.1
    code: int  # the SMTP reply code: from Diagnostic-Code, else from the status class (5 -> 550, 4 -> 450)
    diagnostic: str  # the remote's text (Diagnostic-Code less its type and code), else ""
    remote_mta: str | None


@dataclass(frozen=True, slots=True)
class Report:
    kind: ReportKind
    ref: TraceRef | None  # from the trace header it returns
    verp_id: str | None  # a transaction id in the address it was sent to
    recipients: tuple[RecipientStatus, ...] = ()  # dsn
    feedback_type: str | None = None  # feedback: abuse, fraud, virus, other, not-spam, ... (lower case)
    user_agent: str | None = None  # feedback: who reported (Yahoo, AOL ...)
    original_recipient: str | None = None  # feedback: Original-Rcpt-To, else the returned headers' To

    @property
    def transaction_id(self) -> str | None:
        return self.ref.transaction_id if self.ref is not None else self.verp_id

    def failed(self) -> tuple[RecipientStatus, ...]:
        """The recipients the report says failed (a delay or a success report changes nothing)."""
        return tuple(r for r in self.recipients if r.action == "failed")


def parse(data: bytes, to: Sequence[str] = (), *, header_name: str = DEFAULT_NAME) -> Report | None:
    """The report `data` is (sent to the envelope recipients `to`), or None when it is neither a DSN nor an
    ARF report."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        return _report(message, data, to, header_name)
    except (ValueError, TypeError, LookupError, AttributeError, IndexError, UnicodeError):
        return None  # a structure the email package chokes on: not a report we can read


def _report(message: Message, data: bytes, to: Sequence[str], header_name: str) -> Report | None:
    kind = _kind(message)
    if kind is None:
        return None
    ref = _trace(message, data, header_name)
    verp = next((m.group(0) for address in to if (m := _VERP_ID.search(address.rpartition("@")[0].lower()))), None)
    if kind == "dsn":
        blocks = [p for p in message.walk() if p.get_content_type() in _STATUS_TYPES]
        recipients = tuple(r for part in blocks for r in _recipients(part))
        return Report("dsn", ref, verp, recipients=recipients)
    fields = next((_fields(p) for p in message.walk() if p.get_content_type() == "message/feedback-report"), {})
    returned = _returned_headers(message)
    original = fields.get("original-rcpt-to") or (returned.get("To") if returned is not None else None)
    return Report(
        "feedback",
        ref,
        verp,
        feedback_type=(fields.get("feedback-type") or "other").strip().lower(),
        user_agent=fields.get("user-agent"),
        original_recipient=_address(original) if original else None,
    )


def _kind(message: Message) -> ReportKind | None:
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type") or "").strip().lower()
        if report_type in ("delivery-status", "global-delivery-status"):
            return "dsn"
        if report_type == "feedback-report":
            return "feedback"
    types = {p.get_content_type() for p in message.walk()}
    if "message/feedback-report" in types:
        return "feedback"
    if types & set(_STATUS_TYPES):
        return "dsn"
    return None


def _trace(message: Message, data: bytes, header_name: str) -> TraceRef | None:
    """The trace header of the returned message or headers, else one quoted anywhere in the report."""
    returned = _returned_headers(message)
    if returned is not None:
        for value in returned.get_all(header_name, []):
            ref = decode(str(value))
            if ref is not None:
                return ref
    pattern = re.compile(rb"^" + re.escape(header_name.encode()) + rb":[ \t]*([A-Za-z0-9+/=\r\n \t]+)", re.M | re.I)
    for m in pattern.finditer(data):
        ref = decode(re.split(rb"\r?\n(?![ \t])", m.group(1), maxsplit=1)[0].decode("ascii"))
        if ref is not None:
            return ref
    return None


def _returned_headers(message: Message) -> Message | None:
    """The returned original, as a Message of (at least) its header."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in _RETURNED:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]  # message/rfc822 (and the headers types, when the package parsed them so)
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            return email.message_from_bytes(raw.lstrip(b"\r\n"), policy=email.policy.compat32)
    return None


def _recipients(part: Message) -> Iterable[RecipientStatus]:
    """The per-recipient blocks of a message/delivery-status part (its first block is per-message)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [dict((k.lower(), str(v)) for k, v in b.items()) for b in payload if isinstance(b, Message)]
    else:
        blocks = _blocks(str(payload))
    for block in blocks:
        if "action" not in block:
            continue  # the per-message block, or one without the required field
        yield _recipient(block)


def _blocks(text: str) -> list[dict[str, str]]:
    """Blank-line separated header blocks (a delivery-status body the package left as text)."""
    out = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        parsed = email.message_from_string(chunk.strip() + "\n\n", policy=email.policy.compat32)
        out.append({k.lower(): str(v) for k, v in parsed.items()})
    return out


def _fields(part: Message) -> dict[str, str]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return {k.lower(): str(v) for b in payload if isinstance(b, Message) for k, v in b.items()}
    merged: dict[str, str] = {}
    for block in _blocks(str(payload)):
        merged.update(block)
    return merged


def _recipient(block: dict[str, str]) -> RecipientStatus:
    status_field = block.get("status", "")
    status_match = _STATUS.match(status_field)
    status = ".".join(status_match.groups()) if status_match else None
    code = 550 if status is None or status.startswith("5") else 450 if status.startswith("4") else 250
    raw = " ".join(block.get("diagnostic-code", "").split())
    _, semi, text = raw.partition(";")  # `smtp; 550 5.1.1 ...`: the type first
    text = (text if semi else raw).strip()
    reply = _REPLY.match(text)
    if reply is not None:
        code, status = int(reply.group(1)), reply.group(2) or status
        text = reply.group(3).strip() or text
    recipient = block.get("final-recipient") or block.get("original-recipient")
    return RecipientStatus(
        recipient=_address(recipient.partition(";")[2] or recipient) if recipient else None,
        action=block["action"].strip().lower(),
        status=status,
        code=code,
        diagnostic=text[:MAX_TEXT],
        remote_mta=(block.get("remote-mta", "").partition(";")[2].strip() or None),
    )


def _address(text: str) -> str:
    """An address as a report writes it: `rfc822; a@b`, `<a@b>`, `Ann <a@b>`."""
    _, address = email.utils.parseaddr(text.partition(";")[2] if ";" in text.split("@")[0] else text)
    return address.strip() or text.strip()
