"""The few headers a transaction keeps beside its body, for status reads and analysts (pure)."""

from __future__ import annotations

import email.policy
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.parser import HeaderParser

SUMMARY_HEADERS = ("Subject", "From", "To", "Message-ID", "Date")
_ATTACHMENT = re.compile(rb"^content-disposition:[ \t]*attachment\b", re.IGNORECASE | re.MULTILINE)


def summary_headers(data: bytes) -> dict[str, str]:
    """Decoded values of SUMMARY_HEADERS present in a message's header section."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    parsed = HeaderParser(policy=email.policy.compat32).parsestr(head + "\r\n\r\n", headersonly=True)
    summary = {}
    for name in SUMMARY_HEADERS:
        raw = parsed[name]
        if raw is not None:
            summary[name] = _decode_words("".join(str(raw).splitlines()).strip())
    return summary


def attachment_count(data: bytes) -> int:
    """MIME parts marked `Content-Disposition: attachment`: a scan of header lines, not a MIME parse, so it costs
    one regex pass over the bytes (a body line spelling such a header counts too)."""
    return len(_ATTACHMENT.findall(data))


def message_id_of(summary: dict[str, str]) -> str:
    return summary.get("Message-ID", "").removeprefix("<").removesuffix(">").strip()


def _decode_words(value: str) -> str:
    # Only RFC 2047 words are decoded; parsing addresses would "repair" (rewrite) what a raw
    # message's author wrote, and the summary should show what recipients will see.
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value
