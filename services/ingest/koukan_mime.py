"""Rendering Koukan's message-builder spec into one RFC 5322 message.

Pure: the blobs' bytes, the time and the Message-ID are given. The layout follows the spec's meaning: the first
`text_body` part is the body and the others its alternatives, `related_attachments` sit beside the body in
multipart/related (inline), `file_attachments` make the whole multipart/mixed. Text must be UTF-8, as Koukan
requires. Rendered with mailstream's 7-bit SMTP policy, like the inject API's builder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from email.errors import MessageError
from email.headerregistry import Address as HeaderAddress
from email.message import MIMEPart
from typing import Any

from mailstream.ingest.koukan_request import ADDRESS_HEADERS, ID_HEADERS, Address, Builder, DateValue, Part
from mailstream.ingest.message_builder import POLICY

CANONICAL = {
    n.lower(): n
    for n in ("From", "To", "Cc", "Bcc", "Reply-To", "Sender", "Date", "Message-ID", "In-Reply-To", "References")
} | {"subject": "Subject"}  # Koukan's specs name headers in lower case; written as RFC 5322 spells them


class BuildError(ValueError):
    """The spec and its blobs do not make a message (text that is not UTF-8, a header that will not fold)."""


def render(spec: Builder, blobs: Mapping[str, bytes], now: datetime, new_message_id: Callable[[], str]) -> bytes:
    """The message; `blobs` holds every part's content by blob id (Builder.blobs)."""
    content = {id(part): blobs[blob_id] for part, (blob_id, _) in zip(spec.parts(), spec.blobs(), strict=True)}
    msg = MIMEPart(policy=POLICY)
    try:
        given = set()
        for name, value in spec.headers:
            given.add(name.lower())
            msg[CANONICAL.get(name.lower(), name)] = _header_value(name.lower(), value)
        if "date" not in given:
            msg["Date"] = now
        if "message-id" not in given:
            msg["Message-ID"] = new_message_id()
        msg["MIME-Version"] = "1.0"
        first, *alternatives = spec.text_body
        _set(msg.set_content, first, content[id(first)])
        for part in alternatives:
            _set(msg.add_alternative, part, content[id(part)])
        if spec.related_attachments:
            holder = msg if not alternatives else list(msg.iter_parts())[-1]
            for part in spec.related_attachments:
                _set(holder.add_related, part, content[id(part)], disposition="inline")
        for part in spec.file_attachments:
            _set(msg.add_attachment, part, content[id(part)], disposition="attachment")
        data = msg.as_bytes(policy=POLICY)
    except (ValueError, TypeError, MessageError) as exc:
        raise BuildError(f"cannot build the message: {exc}") from exc
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _header_value(kind: str, value: Any) -> Any:
    if kind in ADDRESS_HEADERS:
        return [
            HeaderAddress(display_name=a.display_name, addr_spec=a.address)
            for a in (Address.model_validate(v) for v in value)
        ]
    if kind == "date":
        date = DateValue.model_validate(value)
        return datetime.fromtimestamp(date.unix_secs, tz=timezone(timedelta(seconds=date.tz_offset)))
    if kind in ID_HEADERS:
        return " ".join(f"<{v}>" for v in value)
    return value


def _set(add: Callable[..., None], part: Part, data: bytes, disposition: str | None = None) -> None:
    maintype, subtype = part.content_type.split("/")
    options: dict[str, Any] = {}
    if disposition is not None:
        options["disposition"] = disposition
        if part.filename:
            options["filename"] = part.filename
    if part.content_id:
        options["cid"] = f"<{part.content_id.strip('<>')}>"
    if maintype == "text":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BuildError(f"a {part.content_type} part is not UTF-8: {exc.reason} at byte {exc.start}") from None
        add(text, subtype=subtype, **options)
    else:
        add(data, maintype, subtype, **options)
