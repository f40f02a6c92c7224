"""Validation of the inject request body, and the address check it relies on."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mailstream.ingest.inject_request import Content, InjectRequest, parse_mailbox, split_header_block


def _request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "envelope_sender": "bounce@b.example.com",
        "recipients": [{"email": "a@x.com"}],
        "content": {"subject": "Hi", "text_body": "hello"},
    }
    body.update(overrides)
    return body


def _locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[int | str, ...]]:
    return [tuple(error["loc"]) for error in exc.value.errors()]


# --- parse_mailbox ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_addr", "expected"),
    [
        ("user@example.com", "user@example.com"),
        ("User.Name+tag@EXAMPLE.Com", "User.Name+tag@example.com"),
        ("o'brien!#$%&*/=?^_`{|}~-@mail.example.org", "o'brien!#$%&*/=?^_`{|}~-@mail.example.org"),
        ("u@bücher.example", "u@xn--bcher-kva.example"),
        ("u@BÜCHER.example", "u@xn--bcher-kva.example"),
        ("u@xn--bcher-kva.example", "u@xn--bcher-kva.example"),
        ("a@b-c.d1", "a@b-c.d1"),
    ],
)
def test_parse_mailbox_normalizes(given_addr: str, expected: str) -> None:
    assert parse_mailbox(given_addr) == expected


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty"),
        ("userexample.com", "no '@'"),
        ("@example.com", "empty local part"),
        ("user@", "empty domain"),
        ("us er@example.com", "whitespace"),
        ("user@example.com\n", "whitespace"),
        ("<user@example.com>", "angle brackets"),
        ("User <user@example.com>", "whitespace"),
        ("User<user@example.com>", "angle brackets"),
        (".user@example.com", "'.'"),
        ("us..er@example.com", "'.'"),
        ("user.@example.com", "'.'"),
        ("us(er@example.com", "not allowed unquoted"),
        ('"quoted"@example.com', "not allowed unquoted"),
        ("a@b@example.com", "not allowed unquoted"),
        ("jörg@example.com", "non-ASCII local part"),
        ("x" * 65 + "@example.com", "limit is 64"),
        ("user@localhost", "not fully qualified"),
        ("user@example..com", "empty label"),
        ("user@example.com.", "empty label"),
        ("user@-example.com", "inner hyphens"),
        ("user@example-.com", "inner hyphens"),
        ("user@exa_mple.com", "inner hyphens"),
        ("user@" + "a" * 64 + ".com", "limit is 63"),
        ("user@" + ".".join(["a" * 60] * 5), "limit is 253"),
        ("user@[192.0.2.1]", "address literals"),
        ("user@\u2603.com", "internationalized"),
    ],
)
def test_parse_mailbox_rejects(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r".") as exc:
        parse_mailbox(bad)
    assert reason in str(exc.value)


_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
_atoms = st.text(alphabet=_ATEXT, min_size=1, max_size=10)
_local_parts = st.lists(_atoms, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 64)
_labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
_domains = st.lists(_labels, min_size=2, max_size=4).map(".".join)


@given(local=_local_parts, domain=_domains)
def test_parse_mailbox_round_trips_valid_addresses(local: str, domain: str) -> None:
    normalized = parse_mailbox(f"{local}@{domain}")
    assert normalized == f"{local}@{domain.lower()}"
    assert parse_mailbox(normalized) == normalized


# --- split_header_block ----------------------------------------------------------------


def test_split_header_block_normalizes_line_endings_and_allows_folding() -> None:
    lines, body = split_header_block("Subject: a\r\n  folded\rX-A: b\n\r\nline1\r\nline2")
    assert lines == ["Subject: a", "  folded", "X-A: b"]
    assert body == "line1\nline2"


@pytest.mark.parametrize(
    "raw", ["Subject: no body separator\n", "\n\nbody only", " Subject: x\n\nb", "not a header\n\nb"]
)
def test_split_header_block_rejects_non_messages(raw: str) -> None:
    with pytest.raises(ValueError, match="raw content"):
        split_header_block(raw)


# --- InjectRequest ---------------------------------------------------------------------


def test_kumomta_example_request_validates() -> None:
    request = InjectRequest.model_validate(
        {
            "envelope_sender": "bounce-123@B.Example.com",
            "recipients": [
                {"email": "a@x.com", "name": "A", "substitutions": {"code": "X1"}, "metadata": {"job_id": "42"}}
            ],
            "substitutions": {"brand": "Acme"},
            "content": {
                "from": {"email": "news@example.com", "name": "Acme"},
                "subject": "Hi {{ name }}",
                "text_body": "Code {{ code }} from {{ brand }}",
                "html_body": "<p>{{ code }}</p>",
                "headers": {"X-Tenant": "t1"},
                "attachments": [],
            },
        }
    )
    assert request.envelope_sender == "bounce-123@b.example.com"
    assert isinstance(request.content, Content)
    assert request.content.from_ is not None
    assert request.content.from_.name == "Acme"
    assert request.template_dialect == "Jinja"


def test_raw_string_content_is_kept_as_a_string() -> None:
    request = InjectRequest.model_validate(_request(content="Subject: x\n\nbody {{ name }}\n"))
    assert request.content == "Subject: x\n\nbody {{ name }}\n"


@pytest.mark.parametrize("sender", ["", "not-an-address", "Name <a@example.com>", "a@localhost"])
def test_bad_envelope_sender_is_reported_at_its_field(sender: str) -> None:
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate(_request(envelope_sender=sender))
    assert _locs(exc) == [("envelope_sender",)]


def test_unknown_top_level_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate(_request(recipient=[{"email": "a@x.com"}]))
    assert _locs(exc) == [("recipient",)]


def test_unknown_builder_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate(_request(content={"text_body": "x", "amp_html_body": "y"}))
    assert _locs(exc) == [("content", "builder", "amp_html_body")]


@pytest.mark.parametrize(("recipients", "count"), [([], 0), ([{"email": "a@x.com"}] * 10_001, 10_001)])
def test_recipient_count_is_bounded(recipients: list[dict[str, str]], count: int) -> None:
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate(_request(recipients=recipients))
    assert _locs(exc) == [("recipients",)]


def test_bad_recipient_addresses_do_not_fail_the_request() -> None:
    request = InjectRequest.model_validate(_request(recipients=[{"email": "nope"}, {"email": "a@x.com"}]))
    assert [r.email for r in request.recipients] == ["nope", "a@x.com"]


def test_missing_required_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate({})
    assert set(_locs(exc)) == {("envelope_sender",), ("recipients",), ("content",)}


def test_content_of_wrong_type_gives_one_clear_error() -> None:
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate(_request(content=42))
    assert _locs(exc) == [("content",)]
    assert "string (a whole message) or an object" in str(exc.value)


def test_bad_base64_attachment_is_rejected_at_its_path() -> None:
    attachment = {"data": "not base64!!", "base64": True, "content_type": "image/png"}
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate(_request(content={"text_body": "x", "attachments": [attachment]}))
    [loc] = _locs(exc)
    assert loc[0] == "content"
    assert loc[-3:] == ("attachments", 0, "data")


def test_base64_attachment_may_be_wrapped() -> None:
    attachment = {"data": "aGVs\nbG8=\n", "base64": True, "content_type": "Text/Plain"}
    request = InjectRequest.model_validate(_request(content={"text_body": "x", "attachments": [attachment]}))
    assert isinstance(request.content, Content)
    assert request.content.attachments[0].payload() == b"hello"
    assert request.content.attachments[0].content_type == "text/plain"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"subject": "only a subject"}, "text_body, html_body or both"),
        (
            {"text_body": "x", "attachments": [{"data": "x", "content_type": "image/png", "content_id": "c"}]},
            "need an html_body",
        ),
        ({"text_body": "x", "attachments": [{"data": "x", "content_type": "pdf"}]}, "type/subtype"),
        ({"text_body": "x", "attachments": [{"data": "x", "content_type": "multipart/mixed"}]}, "multipart"),
        ({"text_body": "x", "attachments": [{"data": "x", "content_type": "a/b", "file_name": "a\nb"}]}, "single line"),
        ({"text_body": "x", "headers": {"Bad Name": "v"}}, "printable ASCII"),
        ({"text_body": "x", "headers": {"Content-Type": "text/html"}}, "set by the message builder"),
        ({"text_body": "x", "headers": {"X-A": "a\r\nBcc: x@y.com"}}, "single line"),
        ({"text_body": "x", "subject": "s", "headers": {"SUBJECT": "t"}}, "not both"),
        ({"text_body": "x", "from": {"email": "a@b.com"}, "headers": {"From": "c@d.com"}}, "not both"),
        ({"text_body": "x", "from": {"email": "not an address"}}, "whitespace"),
    ],
)
def test_inconsistent_builder_content_is_rejected(content: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InjectRequest.model_validate(_request(content=content))


def test_template_syntax_error_rejects_the_request_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"content\.headers\.X-A: template syntax error, line 1"):
        InjectRequest.model_validate(_request(content={"text_body": "ok", "headers": {"X-A": "{{ oops"}}))


def test_static_dialect_skips_the_template_syntax_check() -> None:
    request = InjectRequest.model_validate(_request(template_dialect="Static", content={"text_body": "{{ oops"}))
    assert isinstance(request.content, Content)


def test_static_raw_content_without_header_block_is_a_request_error() -> None:
    with pytest.raises(ValidationError, match="no blank line") as exc:
        InjectRequest.model_validate(_request(template_dialect="Static", content="just a body"))
    assert _locs(exc) == [("content",)]


def test_unsupported_dialect_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        InjectRequest.model_validate(_request(template_dialect="Handlebars"))
    assert _locs(exc) == [("template_dialect",)]


def test_kumomta_compat_fields() -> None:
    request = InjectRequest.model_validate(
        _request(deferred_generation=False, deferred_spool=True, trace_headers={"header_name": "X-Ref"})
    )
    assert request.trace_headers is not None
    assert request.trace_headers.header_name == "X-Ref"
    with pytest.raises(ValidationError, match="deferred_generation is not supported"):
        InjectRequest.model_validate(_request(deferred_generation=True))
    with pytest.raises(ValidationError):
        InjectRequest.model_validate(_request(trace_headers={"typo": True}))
