"""Expanding a validated inject request into one RFC 5322 message per recipient.

Pure: no I/O and no clock; `now` and the Message-ID generator are parameters. A problem
that concerns one recipient (bad address, template that fails for its substitutions,
header injection through a substitution) becomes a `RecipientFailure` for it alone.
"""

from __future__ import annotations

import email.policy
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.errors import MessageError
from email.headerregistry import Address as HeaderAddress
from email.message import MIMEPart
from email.utils import format_datetime
from types import MappingProxyType
from typing import Any

from mailstream.ingest.inject_request import (
    Address,
    Attachment,
    Content,
    InjectRequest,
    Recipient,
    check_line_lengths,
    parse_mailbox,
    split_header_block,
)
from mailstream.ingest.templates import ExpansionTooLarge, GuardedEnvironment, is_plain, render_all
from mailstream.intake.summary import message_id_of, summary_headers

# 7-bit bodies (quoted-printable/base64 for anything else) so no relay on the way needs
# 8BITMIME or has to downgrade, which would also break DKIM signatures.
POLICY = email.policy.SMTP.clone(cte_type="7bit")


@dataclass(frozen=True, slots=True)
class Limits:
    message_bytes: int = 10 * 1024 * 1024  # one recipient's message (and each template's output, in characters)
    total_bytes: int = 64 * 1024 * 1024  # every message of the request together


@dataclass(frozen=True, slots=True)
class GeneratedMessage:
    index: int
    recipient: str  # normalized addr-spec
    data: bytes  # whole message, CRLF line endings, ends with CRLF
    message_id: str  # without angle brackets
    headers: Mapping[str, str]  # decoded values of SUMMARY_HEADERS that are present
    metadata: Mapping[str, Any]  # request metadata overlaid by recipient metadata


@dataclass(frozen=True, slots=True)
class RecipientFailure:
    index: int
    email: str  # as given in the request
    error: str


class _RecipientError(Exception):
    """Aborts one recipient; the message is the error text reported for it."""


def template_sources(request: InjectRequest) -> dict[str, str]:
    """The request's templated strings by their path (the raw message is one, at `content`)."""
    return {"content": request.content} if isinstance(request.content, str) else request.content.template_sources()


def needs_worker(request: InjectRequest) -> bool:
    """Whether the request's templates must render in a worker process (templates.is_plain)."""
    if request.template_dialect == "Static":
        return False
    env = GuardedEnvironment(0)
    return not all(is_plain(env.parse(source)) for source in template_sources(request).values())


def recipient_variables(request: InjectRequest) -> list[dict[str, Any] | None]:
    """What each recipient's templates see; None for a recipient whose address fails (expand reports it)."""
    out: list[dict[str, Any] | None] = []
    for recipient in request.recipients:
        try:
            out.append(_variables(request, recipient, parse_mailbox(recipient.email)))
        except ValueError:
            out.append(None)
    return out


def expand(
    request: InjectRequest,
    *,
    message_id_domain: str,
    now: datetime,
    make_id: Callable[[], str],
    rendered: Sequence[dict[str, str] | str | None] | None = None,
    limits: Limits = Limits(),
) -> list[GeneratedMessage | RecipientFailure]:
    """One result per recipient, in request order. `rendered` holds each recipient's templates as a worker
    rendered them (render_pool), else they are rendered here: only plain ones should be (needs_worker). A
    message past `limits.message_bytes` fails its recipient; ExpansionTooLarge past `limits.total_bytes`."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    sources = template_sources(request)
    env = GuardedEnvironment(limits.message_bytes)
    templates = None if request.template_dialect == "Static" else {p: env.from_string(s) for p, s in sources.items()}
    total = 0

    def new_message_id() -> str:
        return f"<{make_id()}@{message_id_domain}>"

    results: list[GeneratedMessage | RecipientFailure] = []
    for index, recipient in enumerate(request.recipients):
        try:
            addr = parse_mailbox(recipient.email)
        except ValueError as exc:
            results.append(RecipientFailure(index, recipient.email, f"invalid recipient address: {exc}"))
            continue
        try:
            if recipient.name is not None and ("\r" in recipient.name or "\n" in recipient.name):
                raise _RecipientError(f"recipients[{index}].name: a display name must be a single line")
            if templates is None:
                texts: dict[str, str] | str | None = sources
            elif rendered is not None:
                texts = rendered[index]
            else:
                texts = render_all(templates, _variables(request, recipient, addr), limits.message_bytes)
            if not isinstance(texts, dict):
                raise _RecipientError(texts or "not rendered")
            if isinstance(request.content, str):
                data = _raw_message(texts["content"], now, new_message_id)
            else:
                to = HeaderAddress(display_name=recipient.name or "", addr_spec=addr)
                data = _mime_message(request.content, texts, request.envelope_sender, to, now, new_message_id)
            if len(data) > limits.message_bytes:
                raise _RecipientError(f"the message is {len(data)} bytes; at most {limits.message_bytes}")
        except _RecipientError as exc:
            results.append(RecipientFailure(index, recipient.email, str(exc)))
            continue
        total += len(data)
        if total > limits.total_bytes:
            raise ExpansionTooLarge(
                f"the request's messages come to more than {limits.total_bytes} bytes (at "
                f"recipients[{index}]); send fewer recipients per request"
            )
        headers = summary_headers(data)
        results.append(
            GeneratedMessage(
                index=index,
                recipient=addr,
                data=data,
                message_id=message_id_of(headers),
                headers=MappingProxyType(headers),
                metadata=MappingProxyType({**request.metadata, **recipient.metadata}),
            )
        )
    return results


def to_header(name: str | None, addr: str) -> str:
    """KumoMTA's `to_header` template variable: `"Name" <addr>`, or the bare address."""
    if not name:
        return addr
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{addr}>'


def _variables(request: InjectRequest, recipient: Recipient, addr: str) -> dict[str, Any]:
    # KumoMTA's precedence: globals < predefined names < the recipient's own substitutions.
    # A missing name is "" rather than undefined, so "Hi {{ name }}" works for everyone.
    return {
        **request.substitutions,
        "email": addr,
        "name": recipient.name or "",
        "to_header": to_header(recipient.name, addr),
        **recipient.substitutions,
    }


def _raw_message(text: str, now: datetime, new_message_id: Callable[[], str]) -> bytes:
    try:
        lines, body = split_header_block(text)
        check_line_lengths(text, templated=False, what="rendered content line")  # a substitution can lengthen one
    except ValueError as exc:
        raise _RecipientError(str(exc)) from exc
    present = {line.partition(":")[0].lower() for line in lines if line[:1] not in (" ", "\t")}
    added = []
    if "message-id" not in present:
        added.append(f"Message-ID: {new_message_id()}")
    if "date" not in present:
        added.append(f"Date: {format_datetime(now)}")
    message = "\r\n".join([*added, *lines]) + "\r\n\r\n" + body.replace("\n", "\r\n")
    if not message.endswith("\r\n"):
        message += "\r\n"
    try:
        return message.encode("utf-8")
    except UnicodeEncodeError as exc:  # a template can make a lone surrogate the request could not hold
        raise _RecipientError(f"cannot build message: {exc.reason} at character {exc.start}") from exc


def _mime_message(
    content: Content,
    rendered: Mapping[str, str],
    envelope_sender: str,
    to: HeaderAddress,
    now: datetime,
    new_message_id: Callable[[], str],
) -> bytes:
    given = {name.lower() for name in content.headers}
    msg = MIMEPart(policy=POLICY)
    try:
        if content.from_ is not None:
            msg["From"] = _header_address(content.from_)
        elif "from" not in given:
            msg["From"] = HeaderAddress(addr_spec=envelope_sender)
        if "to" not in given:
            msg["To"] = to
        if content.subject is not None:
            msg["Subject"] = rendered["content.subject"]
        if content.reply_to is not None:
            msg["Reply-To"] = _header_address(content.reply_to)
        if "date" not in given:
            msg["Date"] = now
        if "message-id" not in given:
            msg["Message-ID"] = new_message_id()
        for name in content.headers:
            value = rendered[f"content.headers.{name}"]
            if name.lower() == "message-id" and not value.startswith("<"):
                value = f"<{value}>"
            msg[name] = value
        # MIMEPart rather than EmailMessage: the latter also stamps MIME-Version on every subpart.
        msg["MIME-Version"] = "1.0"
        _set_body(msg, rendered.get("content.text_body"), rendered.get("content.html_body"), content.attachments)
        _set_boundaries(msg, str(msg["Message-ID"]), rendered.values())
        data = msg.as_bytes(policy=POLICY)
    except (ValueError, TypeError, MessageError) as exc:
        # Mostly a substitution that put a line break into a header value.
        raise _RecipientError(f"cannot build message: {exc}") from exc
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _header_address(address: Address) -> HeaderAddress:
    return HeaderAddress(display_name=address.name or "", addr_spec=address.email)


def _set_body(msg: MIMEPart, text: str | None, html: str | None, attachments: Iterable[Attachment]) -> None:
    """text/plain, text/html or multipart/alternative; inline parts go into multipart/related
    with the html; other attachments make the whole thing multipart/mixed."""
    if text is not None:
        msg.set_content(text, subtype="plain")
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    attachments = list(attachments)
    inline = [a for a in attachments if a.content_id]
    if inline:
        html_part = msg if text is None else list(msg.iter_parts())[-1]
        for attachment in inline:
            _add_part(html_part.add_related, attachment)
    for attachment in attachments:
        if not attachment.content_id:
            _add_part(msg.add_attachment, attachment)


def _set_boundaries(msg: MIMEPart, message_id: str, texts: Iterable[str]) -> None:
    # The stdlib picks random boundaries; deriving them from the Message-ID makes the same
    # request expand to the same bytes (replays dedupe by body hash). "=_" cannot occur in
    # quoted-printable or base64, so only literal 7-bit text could collide; checked.
    seed = hashlib.sha256(message_id.encode()).hexdigest()[:24]
    texts = list(texts)
    for number, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        boundary = f"=_{seed}_{number}"
        while any(boundary in text for text in texts):
            boundary += "_"
        part.set_boundary(boundary)


def _add_part(add: Callable[..., None], attachment: Attachment) -> None:
    maintype, subtype = attachment.content_type.split("/")
    options: dict[str, Any] = {
        "disposition": "inline" if attachment.content_id else "attachment",
        "filename": attachment.file_name,
        "cid": f"<{attachment.content_id.strip('<>')}>" if attachment.content_id else None,
    }
    if maintype == "text" and not attachment.base64:
        add(attachment.data, subtype=subtype, **options)  # str data: encoded as utf-8 text
    else:
        add(attachment.payload(), maintype, subtype, **options)
