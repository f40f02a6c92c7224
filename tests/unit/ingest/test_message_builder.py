"""Expansion of inject requests into per-recipient RFC 5322 messages."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest

from mailstream.ingest.inject_request import InjectRequest
from mailstream.ingest.message_builder import GeneratedMessage, RecipientFailure, expand, to_header

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
DATE = "Mon, 06 May 2024 07:08:09 +0000"
PNG = b"\x89PNG\r\n\x1a\n\x00fake"


def _counter() -> Callable[[], str]:
    issued = 0

    def make_id() -> str:
        nonlocal issued
        issued += 1
        return f"id{issued}"

    return make_id


def _never() -> str:
    raise AssertionError("make_id must not be called when the content has a Message-ID")


def _expand(body: dict[str, Any], make_id: Callable[[], str] | None = None) -> list[Any]:
    request = InjectRequest.model_validate(
        {"envelope_sender": "bounce@b.example.com", "recipients": [{"email": "a@x.com"}], **body}
    )
    return list(expand(request, message_id_domain="ms.example", now=NOW, make_id=make_id or _counter()))


def _one(body: dict[str, Any], make_id: Callable[[], str] | None = None) -> GeneratedMessage:
    [result] = _expand(body, make_id)
    assert isinstance(result, GeneratedMessage), result
    _assert_crlf(result.data)
    return result


def _parse(message: GeneratedMessage) -> EmailMessage:
    return email.message_from_bytes(message.data, policy=email.policy.default)


def _text(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # the wire form has CRLF; compare as text


def _shape(part: MIMEPart) -> Any:
    if part.is_multipart():
        return (part.get_content_type(), [_shape(p) for p in part.iter_parts()])
    return part.get_content_type()


def _assert_crlf(data: bytes) -> None:
    assert re.search(rb"(?<!\r)\n", data) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", data) is None, "bare CR"
    assert data.endswith(b"\r\n")


# --- builder shapes ------------------------------------------------------------------


def test_text_only_builder_message() -> None:
    message = _one({"content": {"subject": "Hi", "text_body": "hello\n"}})
    parsed = _parse(message)
    assert _shape(parsed) == "text/plain"
    assert _text(parsed) == "hello\n"
    assert parsed["From"] == "bounce@b.example.com"  # no content.from: the envelope sender
    assert parsed["To"] == "a@x.com"
    assert parsed["Subject"] == "Hi"
    assert parsed["Date"] == DATE
    assert parsed["Message-ID"] == "<id1@ms.example>"
    assert parsed["MIME-Version"] == "1.0"
    assert message.recipient == "a@x.com"
    assert message.message_id == "id1@ms.example"
    assert dict(message.headers) == {
        "Subject": "Hi",
        "From": "bounce@b.example.com",
        "To": "a@x.com",
        "Message-ID": "<id1@ms.example>",
        "Date": DATE,
    }
    assert message.data.count(b"MIME-Version") == 1


def test_html_only_builder_message() -> None:
    parsed = _parse(_one({"content": {"html_body": "<p>hi</p>"}}))
    assert _shape(parsed) == "text/html"
    assert _text(parsed) == "<p>hi</p>\n"
    assert "Subject" not in parsed


def test_text_and_html_make_multipart_alternative() -> None:
    parsed = _parse(_one({"content": {"text_body": "plain", "html_body": "<b>rich</b>"}}))
    assert _shape(parsed) == ("multipart/alternative", ["text/plain", "text/html"])
    text, html = parsed.iter_parts()
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert (_text(text), _text(html)) == ("plain\n", "<b>rich</b>\n")


def test_attachments_make_multipart_mixed() -> None:
    attachments = [
        {
            "data": base64.b64encode(b"%PDF-1.4 binary\x00").decode(),
            "base64": True,
            "content_type": "application/pdf",
            "file_name": "invoice.pdf",
        },
        {"data": "Grüße, unencoded", "content_type": "text/csv", "file_name": "données.csv"},
    ]
    content = {"text_body": "see attached", "html_body": "<p>see attached</p>", "attachments": attachments}
    parsed = _parse(_one({"content": content}))
    assert _shape(parsed) == (
        "multipart/mixed",
        [("multipart/alternative", ["text/plain", "text/html"]), "application/pdf", "text/csv"],
    )
    pdf, csv = list(parsed.iter_attachments())
    assert pdf.get_filename() == "invoice.pdf"
    assert pdf.get_content() == b"%PDF-1.4 binary\x00"
    assert csv.get_filename() == "données.csv"
    assert _text(csv) == "Grüße, unencoded\n"


def test_inline_attachments_go_into_multipart_related_with_the_html() -> None:
    logo = {
        "data": base64.b64encode(PNG).decode(),
        "base64": True,
        "content_type": "image/png",
        "content_id": "<logo>",
        "file_name": "logo.png",
    }
    pdf = {"data": "JVBERg==", "base64": True, "content_type": "application/pdf"}
    content = {"text_body": "t", "html_body": '<img src="cid:logo">', "attachments": [logo, pdf]}
    parsed = _parse(_one({"content": content}))
    assert _shape(parsed) == (
        "multipart/mixed",
        [
            ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
            "application/pdf",
        ],
    )
    image = next(p for p in parsed.walk() if p.get_content_type() == "image/png")
    assert isinstance(image, EmailMessage)
    assert image["Content-ID"] == "<logo>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG


def test_inline_attachment_with_html_only() -> None:
    logo = {"data": base64.b64encode(PNG).decode(), "base64": True, "content_type": "image/png", "content_id": "logo"}
    parsed = _parse(_one({"content": {"html_body": '<img src="cid:logo">', "attachments": [logo]}}))
    assert _shape(parsed) == ("multipart/related", ["text/html", "image/png"])


def test_same_request_expands_to_the_same_bytes() -> None:
    content = {
        "text_body": "t",
        "html_body": "<p>h</p>",
        "attachments": [{"data": "x", "content_type": "application/octet-stream"}],
    }
    assert _one({"content": content}).data == _one({"content": content}).data


def test_boundary_avoids_text_that_contains_it() -> None:
    seed = hashlib.sha256(b"<id1@ms.example>").hexdigest()[:24]
    text = f"--=_{seed}_0\nnot a boundary\n"
    parsed = _parse(_one({"content": {"text_body": text, "html_body": "<p>h</p>"}}))
    assert _shape(parsed) == ("multipart/alternative", ["text/plain", "text/html"])
    plain = next(parsed.iter_parts())
    assert isinstance(plain, EmailMessage)
    assert _text(plain) == text


def test_builder_headers_reply_to_and_from() -> None:
    content = {
        "text_body": "x",
        "from": {"email": "news@example.com", "name": "Acme, Inc."},
        "reply_to": {"email": "help@example.com"},
        "headers": {"X-Tenant": "t-{{ email }}"},
    }
    parsed = _parse(_one({"content": content}))
    assert parsed["From"] == '"Acme, Inc." <news@example.com>'
    assert parsed["Reply-To"] == "help@example.com"
    assert parsed["X-Tenant"] == "t-a@x.com"


def test_from_may_come_from_headers() -> None:
    parsed = _parse(_one({"content": {"text_body": "x", "headers": {"From": "Boss <boss@example.com>"}}}))
    assert parsed.get_all("From") == ["Boss <boss@example.com>"]


def test_non_ascii_subject_and_names_are_encoded_and_round_trip() -> None:
    body = {
        "recipients": [{"email": "a@x.com", "name": "Zoë Ñandú"}],
        "content": {
            "subject": "Grüße, {{ name }} ✓",
            "text_body": "Ünïcödé body ✓\n",
            "from": {"email": "news@example.com", "name": "Société Générale"},
        },
    }
    message = _one(body)
    assert message.data.isascii()
    parsed = _parse(message)
    assert parsed["Subject"] == "Grüße, Zoë Ñandú ✓"
    assert parsed["To"].addresses[0].display_name == "Zoë Ñandú"
    assert parsed["From"].addresses[0].display_name == "Société Générale"
    assert _text(parsed) == "Ünïcödé body ✓\n"
    assert message.headers["Subject"] == "Grüße, Zoë Ñandú ✓"
    assert message.headers["To"] == "Zoë Ñandú <a@x.com>"


def test_idn_recipient_domain_is_punycoded() -> None:
    message = _one({"recipients": [{"email": "a@Bücher.example"}], "content": {"text_body": "{{ email }}"}})
    assert message.recipient == "a@xn--bcher-kva.example"
    assert _text(_parse(message)) == "a@xn--bcher-kva.example\n"


def test_to_header_is_not_duplicated_when_headers_has_to() -> None:
    content = {"text_body": "x", "headers": {"to": "{{ to_header }}, cc@example.com"}}
    body = {"recipients": [{"email": "a@x.com", "name": 'Al "The Pal"'}], "content": content}
    parsed = _parse(_one(body))
    assert parsed.get_all("To") == ['"Al \\"The Pal\\"" <a@x.com>, cc@example.com']


def test_long_lines_are_encoded_and_round_trip() -> None:
    text = "word " * 400 + "\n"
    message = _one({"content": {"text_body": text}})
    assert max(len(line) for line in message.data.split(b"\r\n")) <= 998
    assert _text(_parse(message)) == text


def test_long_header_values_and_attachments_are_folded_or_encoded_under_998() -> None:
    long_word = "w" * 2000  # no space to fold at: encoded words split it
    content = {
        "subject": " ".join(["é"] * 800),
        "text_body": "x" * 5000,
        "headers": {"X-Campaign": long_word, "List-Unsubscribe": f"<https://acme.test/u/{'u' * 1500}>"},
        "attachments": [{"data": "t" * 3000, "content_type": "text/csv", "file_name": "wide.csv"}],
    }
    message = _one({"content": content})
    assert max(len(line) for line in message.data.split(b"\r\n")) <= 998
    parsed = _parse(message)
    assert parsed["X-Campaign"] == long_word
    assert parsed["Subject"] == " ".join(["é"] * 800)


def test_body_line_endings_are_normalized_to_crlf() -> None:
    message = _one({"content": {"text_body": "a\nb\r\nc\rd", "html_body": "<p>\nx</p>\n"}})
    _assert_crlf(message.data)


# --- templating ------------------------------------------------------------------------


def test_recipient_substitutions_override_globals() -> None:
    body = {
        "substitutions": {"greeting": "Hello", "code": "GLOBAL"},
        "recipients": [
            {"email": "a@x.com", "name": "Ann", "substitutions": {"code": "A1"}},
            {"email": "b@x.com"},
            {"email": "c@x.com", "name": "Cy", "substitutions": {"name": "Cyrus"}},
        ],
        "content": {"subject": "{{ greeting }} {{ name }}", "text_body": "{{ code }} {{ email }} {{ to_header }}"},
    }
    results = _expand(body)
    assert all(isinstance(r, GeneratedMessage) for r in results)
    subjects = [r.headers["Subject"] for r in results]
    bodies = [_text(_parse(r)) for r in results]
    assert subjects == ["Hello Ann", "Hello", "Hello Cyrus"]  # summary values are stripped
    assert bodies == [
        'A1 a@x.com "Ann" <a@x.com>\n',
        "GLOBAL b@x.com b@x.com\n",
        'GLOBAL c@x.com "Cy" <c@x.com>\n',
    ]


def test_undefined_variable_fails_only_that_recipient() -> None:
    body = {
        "recipients": [{"email": "a@x.com", "substitutions": {"code": "A1"}}, {"email": "b@x.com"}],
        "content": {"text_body": "code {{ code }}"},
    }
    ok, failed = _expand(body)
    assert isinstance(ok, GeneratedMessage)
    assert _text(_parse(ok)) == "code A1\n"
    assert isinstance(failed, RecipientFailure)
    assert (failed.index, failed.email) == (1, "b@x.com")
    assert "content.text_body" in failed.error
    assert "'code' is undefined" in failed.error


def test_runtime_template_error_is_a_recipient_failure() -> None:
    [failed] = _expand({"substitutions": {"n": 0}, "content": {"text_body": "{{ 1 / n }}"}})
    assert isinstance(failed, RecipientFailure)
    assert "ZeroDivisionError" in failed.error


def test_sandbox_blocks_unsafe_attribute_access() -> None:
    [failed] = _expand({"content": {"text_body": "{{ ''.__class__.__mro__ }}"}})
    assert isinstance(failed, RecipientFailure)


def test_templates_cannot_mutate_shared_substitutions() -> None:
    body = {
        "recipients": [{"email": "a@x.com"}, {"email": "b@x.com"}],
        "substitutions": {"seen": []},
        "content": {"text_body": "{{ seen.append(email) }}{{ seen | length }}"},
    }
    results = _expand(body)
    assert all(isinstance(r, RecipientFailure) for r in results)
    assert "SecurityError" in results[0].error


def test_header_injection_through_a_substitution_is_a_recipient_failure() -> None:
    body = {
        "recipients": [
            {"email": "a@x.com", "substitutions": {"s": "hi\r\nBcc: victim@example.com"}},
            {"email": "b@x.com", "substitutions": {"s": "fine"}},
        ],
        "content": {"subject": "{{ s }}", "text_body": "x"},
    }
    failed, ok = _expand(body)
    assert isinstance(failed, RecipientFailure)
    assert "cannot build message" in failed.error
    assert isinstance(ok, GeneratedMessage)
    assert ok.headers["Subject"] == "fine"


def test_static_dialect_leaves_template_syntax_alone() -> None:
    builder = _one({"template_dialect": "Static", "content": {"subject": "{{ x }}", "text_body": "{{ x }} {%"}})
    assert builder.headers["Subject"] == "{{ x }}"
    assert _text(_parse(builder)) == "{{ x }} {%\n"
    raw = _one({"template_dialect": "Static", "content": "Subject: {{ x }}\n\n{{ x }}\n"})
    assert raw.data.endswith(b"\r\n\r\n{{ x }}\r\n")


def test_metadata_is_request_metadata_overlaid_by_recipient_metadata() -> None:
    body = {
        "metadata": {"tenant": "t1", "campaign": "c1"},
        "recipients": [{"email": "a@x.com", "metadata": {"campaign": "c2", "job": 7}}],
        "content": {"text_body": "x"},
    }
    assert dict(_one(body).metadata) == {"tenant": "t1", "campaign": "c2", "job": 7}


# --- raw content -----------------------------------------------------------------------


def test_raw_content_is_templated_and_gets_message_id_and_date() -> None:
    raw = "From: Me <me@example.com>\nSubject: Hi {{ name }}\nTo: {{ to_header }}\n\nHello {{ name }}\nbye"
    message = _one({"recipients": [{"email": "a@x.com", "name": "James"}], "content": raw})
    assert message.data == (
        b"Message-ID: <id1@ms.example>\r\n"
        b"Date: " + DATE.encode() + b"\r\n"
        b"From: Me <me@example.com>\r\n"
        b"Subject: Hi James\r\n"
        b'To: "James" <a@x.com>\r\n'
        b"\r\n"
        b"Hello James\r\n"
        b"bye\r\n"
    )
    assert message.message_id == "id1@ms.example"
    assert message.headers["To"] == '"James" <a@x.com>'  # as written, not re-formatted


def test_raw_content_keeps_its_own_message_id_and_date() -> None:
    raw = "Message-Id: < keep@example.com >\r\ndate: Tue, 01 Jan 2030 00:00:00 +0000\r\nSubject: x\r\n\r\nb\r\n"
    message = _one({"content": raw}, make_id=_never)
    assert message.data == raw.encode()
    assert message.message_id == "keep@example.com"


def test_raw_content_without_header_block_after_templating_fails_the_recipient() -> None:
    [failed] = _expand({"content": "{{ body }}", "substitutions": {"body": "no headers at all"}})
    assert isinstance(failed, RecipientFailure)
    assert "no blank line" in failed.error


def test_raw_content_with_broken_headers_keeps_them_as_written() -> None:
    raw = "Subject: =?x-unknown?q?abc?=\nTo: <<<broken\nMessage-ID: <m@x>\n\nb\n"
    message = _one({"content": raw}, make_id=_never)
    assert message.headers["To"] == "<<<broken"
    assert message.headers["Subject"] == "=?x-unknown?q?abc?="


def test_builder_keeps_message_id_from_headers() -> None:
    content = {"text_body": "x", "headers": {"Message-ID": "mine-{{ n }}@example.com"}}
    message = _one({"substitutions": {"n": 7}, "content": content}, make_id=_never)
    assert message.message_id == "mine-7@example.com"
    assert _parse(message).get_all("Message-ID") == ["<mine-7@example.com>"]


# --- recipients and arguments ----------------------------------------------------------


def test_bad_recipient_addresses_fail_while_others_succeed() -> None:
    bad = ["", "no-at-sign", "two words@x.com", "<a@x.com>", "a@localhost", "a@-x.com", "a..b@x.com"]
    recipients = [{"email": "ok1@x.com"}, *({"email": e} for e in bad), {"email": "OK2@X.COM"}]
    results = _expand({"recipients": recipients, "content": {"text_body": "x"}})
    assert [r.index for r in results] == list(range(len(recipients)))
    first, *middle, last = results
    assert isinstance(first, GeneratedMessage)
    assert first.recipient == "ok1@x.com"
    assert isinstance(last, GeneratedMessage)
    assert last.recipient == "OK2@x.com"
    assert [(f.email, f.error.startswith("invalid recipient address: ")) for f in middle] == [(e, True) for e in bad]
    assert first.message_id != last.message_id


def test_naive_now_is_refused() -> None:
    request = InjectRequest.model_validate(
        {"envelope_sender": "a@x.com", "recipients": [{"email": "a@x.com"}], "content": {"text_body": "x"}}
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        expand(request, message_id_domain="d.example", now=datetime(2024, 1, 1), make_id=_counter())


def test_to_header_formatting() -> None:
    assert to_header(None, "a@x.com") == "a@x.com"
    assert to_header("", "a@x.com") == "a@x.com"
    assert to_header('A "B" \\ C', "a@x.com") == '"A \\"B\\" \\\\ C" <a@x.com>'
