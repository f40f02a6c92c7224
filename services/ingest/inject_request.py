"""The body of a KumoMTA-style `POST /api/inject/v1` request, validated.

Everything that makes the *whole* request unusable is a pydantic `ValidationError` here.
Recipient addresses are deliberately not checked: a bad one fails only that recipient
(as in KumoMTA), which `message_builder.expand` reports.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import idna
from jinja2 import Environment, TemplateSyntaxError
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mailstream.core.line_length import overlong_lines
from mailstream.core.trace_header import DEFAULT_NAME as DEFAULT_TRACE_NAME
from mailstream.core.trace_header import check_name
from mailstream.intake.routing import RoutingError, check_steering

_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
_LABEL_CHARS = re.compile(r"[a-z0-9-]+")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except ':'
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
# Headers whose value the MIME builder owns; a user copy would contradict the body it builds.
_OWNED = frozenset({"content-type", "content-transfer-encoding", "content-disposition", "mime-version"})
# Request-wide metadata rides in every recipient's mail.accepted record (1 MiB at most, with the headers).
METADATA_LIMIT = 256 * 1024
# Only parses, never renders: syntax errors become request errors before any recipient is tried.
_SYNTAX_ENV = Environment(keep_trailing_newline=True)
EMAIL: dict[str, Any] = {"format": "email"}  # the OpenAPI document's word for what parse_mailbox takes


def parse_mailbox(addr: str) -> str:
    """Return `addr` as a normalized addr-spec, or raise ValueError saying what is wrong.

    The domain is lowercased and IDNA-encoded; the local part is kept exactly (it is the
    receiving site's to interpret). Deliberately stricter than RFC 5321: no quoted local
    parts, no address literals, no SMTPUTF8 local parts, no dotless domains.
    """
    if not addr:
        raise ValueError("address is empty")
    if any(c.isspace() for c in addr):
        raise ValueError("address contains whitespace")
    if "<" in addr or ">" in addr:
        raise ValueError("give a bare address (local@domain), without a display name or angle brackets")
    local, at, domain = addr.rpartition("@")
    if not at:
        raise ValueError("address has no '@'")
    if not local:
        raise ValueError("address has an empty local part")
    if not domain:
        raise ValueError("address has an empty domain")
    _check_local_part(local)
    return f"{local}@{_normalize_domain(domain)}"


def _check_local_part(local: str) -> None:
    if not local.isascii():
        raise ValueError("non-ASCII local parts (SMTPUTF8) are not supported")
    if len(local) > 64:
        raise ValueError(f"local part is {len(local)} characters long; the limit is 64")
    for atom in local.split("."):
        if not atom:
            raise ValueError("local part has a leading, trailing or doubled '.'")
        if not _ATEXT.fullmatch(atom):
            bad = sorted({c for c in atom if not _ATEXT.fullmatch(c)})
            raise ValueError(f"local part contains characters not allowed unquoted: {''.join(bad)!r}")


def _normalize_domain(domain: str) -> str:
    if domain.startswith("["):
        raise ValueError("address literals ([1.2.3.4]) are not accepted; use a domain name")
    if domain.isascii():
        ascii_domain = domain.lower()
    else:
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"domain {domain!r} is not a valid internationalized name: {exc}") from exc
    if len(ascii_domain) > 253:
        raise ValueError(f"domain is {len(ascii_domain)} characters long; the limit is 253")
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise ValueError(f"domain {domain!r} is not fully qualified")
    for label in labels:
        if not label:
            raise ValueError(f"domain {domain!r} has an empty label")
        if len(label) > 63:
            raise ValueError(f"a domain label is {len(label)} characters long; the limit is 63")
        if not _LABEL_CHARS.fullmatch(label) or label[0] == "-" or label[-1] == "-":
            raise ValueError(f"domain label {label!r} may hold only letters, digits and inner hyphens")
    return ascii_domain


def split_header_block(text: str) -> tuple[list[str], str]:
    """Split a raw message into header lines and body (LF line endings). Checks only the shape:
    a raw message is the sender's to get right; we refuse just what cannot be a message."""
    head, sep, body = text.replace("\r\n", "\n").replace("\r", "\n").partition("\n\n")
    if not sep:
        raise ValueError("raw content has no blank line separating the header from the body")
    lines = head.split("\n")
    for number, line in enumerate(lines, start=1):
        if line[:1] in (" ", "\t") and number > 1:
            continue
        name, colon, _ = line.partition(":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"raw content header line {number} is not 'Name: value': {line[:60]!r}")
    return lines, body


_TEMPLATE_SYNTAX = (b"{{", b"{%", b"{#")


def check_line_lengths(text: str, *, templated: bool, what: str = "content line") -> None:
    """ValueError naming the first line of raw content longer than RFC 5322 allows. Of a template, only lines
    without template syntax are judged here (they come out as written); the others once rendered (message_builder).
    """
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8", "surrogatepass")
    for line in overlong_lines(data):
        if not templated or not any(mark in data[line.start : line.end] for mark in _TEMPLATE_SYNTAX):
            raise ValueError(line.describe(what))


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(json_schema_extra=EMAIL)
    name: str | None = None

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        return parse_mailbox(value)

    @field_validator("name")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError("a display name must be a single line")
        return value


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Declared before `data` so the `data` validator can see it.
    base64: bool = False
    data: str
    content_type: str
    file_name: str | None = None
    content_id: str | None = None

    @field_validator("data")
    @classmethod
    def _valid_base64(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("base64"):
            try:
                base64.b64decode("".join(value.split()), validate=True)
            except binascii.Error as exc:
                raise ValueError(f"data is not valid base64 (base64 is true): {exc}") from exc
        return value

    @field_validator("content_type")
    @classmethod
    def _valid_content_type(cls, value: str) -> str:
        if not _MIME_TYPE.fullmatch(value):
            raise ValueError("content_type must be a bare 'type/subtype' such as 'application/pdf'")
        if value.lower().startswith("multipart/"):
            raise ValueError("an attachment cannot be multipart; the builder makes the multipart structure")
        return value.lower()

    @field_validator("file_name", "content_id")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value or not value.strip()):
            raise ValueError("must be a non-empty single line")
        return value

    def payload(self) -> bytes:
        if self.base64:
            return base64.b64decode("".join(self.data.split()))
        return self.data.encode("utf-8")


class Content(BaseModel):
    """The builder form of `content`: parts and headers from which a MIME message is made."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    from_: Address | None = Field(default=None, alias="from")
    reply_to: Address | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} must be printable ASCII without ':' or spaces")
            if name.lower() in _OWNED:
                raise ValueError(f"header {name!r} is set by the message builder and cannot be given")
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} value must be a single line")
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> Content:
        if self.text_body is None and self.html_body is None:
            raise ValueError("content needs text_body, html_body or both")
        if self.html_body is None and any(a.content_id for a in self.attachments):
            raise ValueError("inline attachments (with content_id) need an html_body to refer to them")
        given = {name.lower() for name in self.headers}
        for header, value in (("subject", self.subject), ("from", self.from_), ("reply-to", self.reply_to)):
            if value is not None and header in given:
                raise ValueError(f"give {header!r} as a content field or in content.headers, not both")
        return self

    def template_sources(self) -> dict[str, str]:
        """The templated strings, keyed by their path in the request (used in error messages)."""
        named = {"subject": self.subject, "text_body": self.text_body, "html_body": self.html_body}
        sources = {f"content.{name}": value for name, value in named.items() if value is not None}
        sources.update({f"content.headers.{name}": value for name, value in self.headers.items()})
        return sources


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(json_schema_extra=EMAIL)  # checked per recipient in expand(): a bad one fails only itself
    name: str | None = None
    substitutions: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


def _content_kind(value: object) -> str | None:
    if isinstance(value, str):
        return "raw"
    if isinstance(value, dict | Content):
        return "builder"
    return None


# A discriminated union rather than `str | Content`, so a bad builder object reports only
# its own errors (at content.builder.<field>) and not also "input should be a string".
ContentField = Annotated[
    Annotated[str, Tag("raw")] | Annotated[Content, Tag("builder")],
    Discriminator(
        _content_kind,
        custom_error_type="content_type",
        custom_error_message="content must be a string (a whole message) or an object (builder)",
    ),
]


class TraceHeaders(BaseModel):
    """KumoMTA's trace_headers: `supplemental_header` (on unless false) adds `header_name`, base64 JSON naming
    the transaction (core.trace_header), so a bounce or complaint coming back by mail is tied to it.
    `received_header` and `include_meta_names` are accepted for compatibility and not acted on."""

    model_config = ConfigDict(extra="forbid")

    received_header: bool = False
    supplemental_header: bool = True
    header_name: str = DEFAULT_TRACE_NAME
    include_meta_names: list[str] = Field(default_factory=list)

    @field_validator("header_name")
    @classmethod
    def _field_name(cls, value: str) -> str:
        return check_name(value)

    def name(self) -> str | None:
        """The header to add, or None."""
        return self.header_name if self.supplemental_header else None


class InjectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    envelope_sender: str = Field(json_schema_extra=EMAIL)
    recipients: list[Recipient] = Field(min_length=1, max_length=10_000)
    # Declared before `content` so the content validator knows whether it is a template.
    template_dialect: Literal["Jinja", "Static"] = "Jinja"
    content: ContentField
    substitutions: dict[str, Any] = Field(default_factory=dict)
    # Our extension: applies to every recipient; recipient metadata wins per key.
    metadata: dict[str, Any] = Field(default_factory=dict)
    deferred_generation: bool = False
    # Accepted for KumoMTA compatibility and ignored: events are durable once produced.
    deferred_spool: bool = False
    trace_headers: TraceHeaders | None = None

    @field_validator("envelope_sender")
    @classmethod
    def _valid_sender(cls, value: str) -> str:
        return parse_mailbox(value)

    @field_validator("deferred_generation")
    @classmethod
    def _not_deferred(cls, value: bool) -> bool:
        if value:
            raise ValueError("deferred_generation is not supported; messages are generated synchronously")
        return value

    @field_validator("content")
    @classmethod
    def _valid_templates(cls, content: str | Content, info: ValidationInfo) -> str | Content:
        dialect = info.data.get("template_dialect")
        if isinstance(content, str) and dialect == "Static":
            split_header_block(content)
        if isinstance(content, str):
            check_line_lengths(content, templated=dialect == "Jinja")
        if dialect == "Jinja":
            sources = {"content": content} if isinstance(content, str) else content.template_sources()
            for path, source in sources.items():
                try:
                    _SYNTAX_ENV.parse(source)
                except TemplateSyntaxError as exc:
                    raise ValueError(f"{path}: template syntax error, line {exc.lineno}: {exc.message}") from exc
        return content


def shared_metadata_errors(metadata: dict[str, Any], latest: datetime | None = None) -> list[tuple[str, str]]:
    """(field, message) wrong with the request's own metadata: as every recipient carries it, one such error
    refuses the whole request. `latest`: the last instant its send_at and expires_at may name."""
    try:
        check_steering(metadata, latest)
    except RoutingError as exc:
        return [(exc.field, str(exc).removeprefix(exc.field).strip())]
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > METADATA_LIMIT:
        return [
            ("metadata", f"is {size} bytes as JSON; at most {METADATA_LIMIT} (every recipient's record carries it)")
        ]
    return []
