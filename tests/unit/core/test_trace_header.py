"""The trace header: what it encodes, that only ours decodes, and where it goes in a message."""

from __future__ import annotations

import base64
import json

import pytest

from mailstream.core.trace_header import TraceRef, check_name, decode, encode, with_header

TX = "0123456789abcdef0123456789abcdef"


def test_it_is_base64_json_naming_the_transaction_tenant_and_recipient_with_kumomtas_marker() -> None:
    value = encode(TraceRef(TX, "acme", "ann@example.com"))
    payload = json.loads(base64.b64decode(value))
    assert payload == {"_@_": "\\_/", "id": TX, "tenant": "acme", "recipient": "ann@example.com"}
    assert decode(value) == TraceRef(TX, "acme", "ann@example.com")


def test_a_value_folded_over_lines_by_a_receiver_still_decodes() -> None:
    value = encode(TraceRef(TX, None, None))
    assert decode(value[:20] + "\r\n " + value[20:]) == TraceRef(TX, None, None)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 at all!",
        base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.b64encode(b"[1, 2]").decode(),  # JSON, not an object
        base64.b64encode(json.dumps({"id": TX}).encode()).decode(),  # no marker: someone else's header
        base64.b64encode(json.dumps({"_@_": "\\_/", "id": "../etc"}).encode()).decode(),  # not a transaction id
        base64.b64encode(json.dumps({"_@_": "\\_/", "id": 7}).encode()).decode(),
    ],
)
def test_anything_else_is_no_reference_and_never_an_exception(value: str) -> None:
    assert decode(value) is None


def test_the_header_goes_first_so_a_dkim_signature_added_later_precedes_it() -> None:
    data = with_header(b"Subject: s\r\n\r\nbody\r\n", "X-KumoRef", TraceRef(TX, "acme", "a@b.example"))
    first, rest = data.split(b"\r\n", 1)
    assert first.startswith(b"X-KumoRef: ")
    assert rest == b"Subject: s\r\n\r\nbody\r\n"
    assert decode(first.split(b": ", 1)[1].decode()) == TraceRef(TX, "acme", "a@b.example")


@pytest.mark.parametrize("name", ["", "X Ref", "X-Ref:", "X-Réf", "X" * 77, "X-Ref\r\nBcc"])
def test_a_header_name_that_is_no_field_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="header field name"):
        check_name(name)
