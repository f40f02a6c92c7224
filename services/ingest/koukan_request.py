"""Koukan's REST transaction JSON (jsbucy/koukan `filter.py`, `message_builder.json`), parsed and checked.

Pure: no I/O. What a router accepts on POST /senders/{sender}/transactions, held to mailstream's rules: one
`rcpt_to` (a REST transaction is one recipient, as on Koukan's non-incremental senders), no nulls, no unknown
keys; the fields only Koukan's SMTP gateway sends, and `retry`/`notification` (server-decided on Koukan too),
are refused by name. Also the URI, Content-Range and request-timeout forms its clients send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailstream.ingest.inject_request import parse_mailbox

PREFIX = "/koukan"  # where the routes are mounted: a Koukan producer changes only its base URL
MAX_TIMEOUT = 30  # seconds a long-poll may wait (Koukan's MAX_TIMEOUT)
FINALIZE_BLOB_HEADER = "x-finalize-blob-length"
_ID = r"[A-Za-z0-9_-]{1,64}"
BLOB_ID = re.compile(_ID)
_ESMTP_KEYWORD = r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$"
SERVER_DECIDED = {
    "retry": "retries are decided by the server (mailstream always retries temporary failures)",
    "notification": "bounces are decided by the server",
}
GATEWAY_ONLY = ("remote_host", "local_host", "smtp_meta", "filter_output", "rcpt_to_list_offset")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EsmtpParam(_Strict):
    k: str = Field(pattern=_ESMTP_KEYWORD)
    p: str | None = Field(default=None, max_length=500)


class Mailbox(_Strict):
    m: str = Field(max_length=320)
    e: list[EsmtpParam] = Field(default_factory=list, max_length=16)


class SenderRef(_Strict):
    name: str | None = Field(default=None, max_length=64)
    tag: str | None = Field(default=None, pattern=f"^{_ID}$")  # becomes the campaign


class BlobContent(_Strict):
    """Exactly one of inline text, a blob the client uploads later, or an earlier transaction's blob."""

    inline: str | None = None
    create_id: str | None = Field(default=None, pattern=f"^{_ID}$")
    reuse_uri: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one(self) -> BlobContent:
        if sum(v is not None for v in (self.inline, self.create_id, self.reuse_uri)) != 1:
            raise ValueError("give exactly one of inline, create_id, reuse_uri")
        return self


class Part(_Strict):
    content_type: str = Field(pattern=r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
    content: BlobContent
    filename: str | None = Field(default=None, max_length=255)
    content_id: str | None = Field(default=None, max_length=255)

    @field_validator("content_type")
    @classmethod
    def _leaf(cls, value: str) -> str:
        if value.split("/")[0].lower() in ("multipart", "message"):
            raise ValueError("a part holds content: multipart/* and message/* are what the builder makes")
        return value


class Address(_Strict):
    address: str = Field(max_length=320)
    display_name: str = Field(default="", max_length=255)


class DateValue(_Strict):
    unix_secs: int = Field(ge=0, le=253402128000)  # a day short of year 10000, whatever the offset
    tz_offset: int = Field(default=0, ge=-86399, le=86399)


ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to", "sender")
ID_HEADERS = ("message-id", "in-reply-to", "references")


class Builder(_Strict):
    """Koukan's message-builder spec; each part's content is a blob (inline ones become `inline<N>`)."""

    headers: list[tuple[str, Any]] = Field(default_factory=list, max_length=100)
    text_body: list[Part] = Field(default_factory=list, max_length=4)
    related_attachments: list[Part] = Field(default_factory=list, max_length=50)
    file_attachments: list[Part] = Field(default_factory=list, max_length=50)

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        for name, value in headers:
            if not re.fullmatch(r"[!-9;-~]{1,76}", name):
                raise ValueError(f"{name!r} is not a header name")
            kind = name.lower()
            if kind in ADDRESS_HEADERS:
                if not isinstance(value, list) or not value:
                    raise ValueError(f"{name}: a non-empty list of {{address, display_name}}")
                for item in value:
                    Address.model_validate(item)
            elif kind == "date":
                DateValue.model_validate(value)
            elif kind in ID_HEADERS:
                if not isinstance(value, list) or not all(isinstance(v, str) and "<" not in v for v in value):
                    raise ValueError(f"{name}: a list of message ids without <>")
            elif not isinstance(value, str) or "\r" in value or "\n" in value:
                raise ValueError(f"{name}: a single-line string")
        return headers

    @model_validator(mode="after")
    def _parts(self) -> Builder:
        if not self.text_body:
            raise ValueError("text_body: at least one part")
        ids = [b for b, _ in self.blobs()]
        if len(ids) != len(set(ids)):
            raise ValueError("each blob id (create_id, the reused blob's id) appears once")
        return self

    def parts(self) -> list[Part]:
        return [*self.text_body, *self.related_attachments, *self.file_attachments]

    def blobs(self) -> list[tuple[str, BlobContent]]:
        """(blob id, content) of every part, in order; inline content is `inline<N>`, N its place, as Koukan."""
        out = []
        for n, part in enumerate(self.parts()):
            c = part.content
            if c.inline is not None:
                out.append((f"inline{n}", c))
            elif c.create_id is not None:
                out.append((c.create_id, c))
            else:
                ref = parse_reuse_uri(c.reuse_uri or "")
                out.append((ref.blob_id if ref is not None and ref.blob_id else f"reuse{n}", c))
        return out


class Body(_Strict):
    inline: str | None = None
    reuse_uri: str | None = Field(default=None, max_length=2000)
    message_builder: Builder | None = None

    @model_validator(mode="after")
    def _one(self) -> Body:
        if sum(v is not None for v in (self.inline, self.reuse_uri, self.message_builder)) != 1:
            raise ValueError("give exactly one of inline, reuse_uri, message_builder (or leave body out to PUT it)")
        return self


class CreateTx(_Strict):
    mail_from: Mailbox
    rcpt_to: list[Mailbox] = Field(min_length=1, max_length=1)
    body: Body | None = None
    sender: SenderRef | None = None

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, box: Mailbox) -> Mailbox:
        if box.m:  # "" is the null reverse path
            box.m = parse_mailbox(box.m)
        return box

    @field_validator("rcpt_to")
    @classmethod
    def _rcpt_to(cls, boxes: list[Mailbox]) -> list[Mailbox]:
        for box in boxes:
            box.m = parse_mailbox(box.m)
        return boxes


def create_errors(raw: Any) -> list[tuple[str, str]]:
    """What Koukan refuses before field validation: a body that is not an object, nulls, server-decided and
    gateway-only fields. Empty: go on to validate."""
    if not isinstance(raw, dict):
        return [("(body)", "a JSON object")]
    errors = [(k, why) for k, why in SERVER_DECIDED.items() if k in raw]
    errors += [(k, "only Koukan's SMTP gateway sends this; not supported") for k in GATEWAY_ONLY if k in raw]
    errors += [(path, "null is not allowed") for path in _nulls(raw, "")]
    return errors


def _nulls(value: Any, path: str) -> list[str]:
    if value is None:
        return [path or "(body)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


@dataclass(frozen=True, slots=True)
class BlobRef:
    tx_id: str
    blob_id: str | None  # None: the transaction's body


def parse_reuse_uri(uri: str) -> BlobRef | None:
    """`/transactions/<id>/body` or `/transactions/<id>/blob/<blob id>`, relative or absolute, with or without
    this API's prefix; None for anything else."""
    path = urlparse(uri).path
    path = path.removeprefix(PREFIX)
    m = re.fullmatch(rf"/transactions/({_ID})/(?:body|blob/({_ID}))", path)
    if m is None:
        return None
    return BlobRef(m.group(1), m.group(2))


@dataclass(frozen=True, slots=True)
class Chunk:
    """Where an uploaded piece goes: at `start`; `total` the blob's length once known (None: more to come)."""

    start: int
    total: int | None


def parse_upload(content_range: str | None, finalize: str | None, received: int) -> Chunk:
    """A PUT's place in its blob: no header, the whole blob; `content-range: bytes a-b/*` a piece with more to
    come, `bytes a-b/n` the last; `x-finalize-blob-length: n` with an empty body ends the blob at n.
    ValueError saying what is wrong."""
    if finalize is not None:
        if content_range is not None:
            raise ValueError(f"{FINALIZE_BLOB_HEADER} with content-range")
        if received:
            raise ValueError(f"{FINALIZE_BLOB_HEADER} with a non-empty PUT")
        if not finalize.strip().isdigit():
            raise ValueError(f"{FINALIZE_BLOB_HEADER} is not a length")
        n = int(finalize.strip())
        return Chunk(n, n)
    if content_range is None:
        return Chunk(0, received)
    m = re.fullmatch(r"\s*bytes\s+(\d{1,15})-(\d{1,15})/(\*|\d{1,15})\s*", content_range)
    if m is None:
        raise ValueError("content-range is not 'bytes <first>-<last>/<length or *>'")
    first, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < first or last - first + 1 != received:
        raise ValueError(f"content-range covers {last - first + 1} bytes; the PUT has {received}")
    if total is not None and last + 1 != total:
        raise ValueError("content-range with a length must end at it")
    return Chunk(first, total)


def content_range(length: int, total: int | None) -> str:
    """The reply's Content-Range: what the blob holds so far (bytes 0-<len-1>/<total or *>)."""
    end = f"{length - 1}" if length else "0"
    return f"bytes 0-{end}/{'*' if total is None else total}"


def request_timeout(header: str | None, etag_given: bool) -> int:
    """Seconds a GET waits: only with If-None-Match; `request-timeout` (an integer, capped at 30), else 30."""
    if header is not None and not header.strip().isdigit():
        raise ValueError("request-timeout is not an integer number of seconds")
    if not etag_given:
        return 0
    return MAX_TIMEOUT if header is None else min(int(header.strip()), MAX_TIMEOUT)


def etag_of(if_none_match: str | None) -> str | None:
    """The entity tag a client sent, quoted or not (Koukan's clients echo what they got)."""
    if if_none_match is None or not if_none_match.strip():
        return None
    return if_none_match.strip().removeprefix("W/").strip('"')
