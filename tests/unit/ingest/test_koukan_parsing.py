"""Koukan's transaction JSON, blob URIs, upload ranges and long-poll headers, parsed (ingest.koukan_request)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mailstream.ingest.koukan_request import (
    BlobRef,
    Chunk,
    CreateTx,
    content_range,
    create_errors,
    etag_of,
    parse_reuse_uri,
    parse_upload,
    request_timeout,
)

ENVELOPE: dict[str, Any] = {"mail_from": {"m": "alice@acme.test"}, "rcpt_to": [{"m": "bob@Example.COM"}]}


def test_an_envelope_alone_asks_for_the_body_to_be_uploaded() -> None:
    tx = CreateTx.model_validate(ENVELOPE)
    assert tx.body is None
    assert tx.rcpt_to[0].m == "bob@example.com"  # the domain normalized, as the inject API does


def test_the_null_reverse_path_and_esmtp_params_with_koukans_keys_are_taken() -> None:
    tx = CreateTx.model_validate(
        {**ENVELOPE, "mail_from": {"m": "", "e": [{"k": "SIZE", "p": "144"}, {"k": "SMTPUTF8"}]}}
    )
    assert tx.mail_from.m == ""
    assert [p.k for p in tx.mail_from.e] == ["SIZE", "SMTPUTF8"]


@pytest.mark.parametrize(
    "body",
    [
        {**ENVELOPE, "rcpt_to": [{"m": "a@example.com"}, {"m": "b@example.com"}]},  # one recipient per transaction
        {**ENVELOPE, "rcpt_to": {"m": "a@example.com"}},  # Koukan's stale docs: not a list
        {**ENVELOPE, "rcpt_to": []},
        {"rcpt_to": [{"m": "a@example.com"}]},  # no mail_from
        {**ENVELOPE, "mail_from": {"keyword": "SIZE"}},  # docs' stale keyword/value names
        {**ENVELOPE, "body": {"inline": "x", "reuse_uri": "/transactions/a/body"}},  # two kinds of body
        {**ENVELOPE, "body": {}},
        {**ENVELOPE, "sender": {"name": "acme", "other": 1}},  # sender holds name and tag only
        {**ENVELOPE, "rcpt_to": [{"m": "no-at-sign"}]},
        {**ENVELOPE, "unknown": 1},
    ],
)
def test_what_koukan_refuses_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CreateTx.model_validate(body)


def test_server_decided_gateway_only_fields_and_nulls_are_named_before_validation() -> None:
    errors = dict(create_errors({**ENVELOPE, "retry": {}, "smtp_meta": {}, "body": {"inline": None}}))
    assert "retry" in errors
    assert "smtp_meta" in errors
    assert errors["body.inline"] == "null is not allowed"
    assert create_errors([1]) == [("(body)", "a JSON object")]
    assert create_errors(ENVELOPE) == []


def test_a_message_builder_names_its_blobs_as_koukan_does() -> None:
    spec = {
        "headers": [["from", [{"address": "a@acme.test"}]], ["subject", "hi"], ["date", {"unix_secs": 1700000000}]],
        "text_body": [
            {"content_type": "text/plain", "content": {"inline": "hello"}},
            {"content_type": "text/html", "content": {"create_id": "html"}},
        ],
        "file_attachments": [
            {
                "content_type": "application/pdf",
                "filename": "a.pdf",
                "content": {"reuse_uri": "/transactions/t1/blob/pdf"},
            }
        ],
    }
    tx = CreateTx.model_validate({**ENVELOPE, "body": {"message_builder": spec}})
    assert tx.body is not None
    assert tx.body.message_builder is not None
    assert [b for b, _ in tx.body.message_builder.blobs()] == ["inline0", "html", "pdf"]  # reused: its own id


@pytest.mark.parametrize(
    "spec",
    [
        {"text_body": []},
        {"text_body": [{"content_type": "text/plain", "content": {}}]},
        {"text_body": [{"content_type": "text/plain", "content": {"inline": "a", "create_id": "b"}}]},
        {
            "headers": [["subject", "two\r\nlines"]],
            "text_body": [{"content_type": "text/plain", "content": {"inline": "a"}}],
        },
        {
            "headers": [["from", "a@acme.test"]],
            "text_body": [{"content_type": "text/plain", "content": {"inline": "a"}}],
        },
        {
            "headers": [["message-id", ["<x@y>"]]],
            "text_body": [{"content_type": "text/plain", "content": {"inline": "a"}}],
        },
        {
            "text_body": [
                {"content_type": "text/plain", "content": {"create_id": "same"}},
                {"content_type": "text/html", "content": {"create_id": "same"}},
            ]
        },
    ],
)
def test_a_bad_message_builder_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CreateTx.model_validate({**ENVELOPE, "body": {"message_builder": spec}})


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("/transactions/abc/body", BlobRef("abc", None)),
        ("/koukan/transactions/abc/body", BlobRef("abc", None)),
        ("https://ingest.example:8000/koukan/transactions/abc/blob/pdf1", BlobRef("abc", "pdf1")),
        ("/transactions/abc", None),
        ("/transactions/abc/blob/", None),
        ("/transactions/../body", None),
        ("/api/transactions/abc", None),
    ],
)
def test_reuse_uris_relative_or_absolute(uri: str, ref: BlobRef | None) -> None:
    assert parse_reuse_uri(uri) == ref


def test_upload_ranges() -> None:
    assert parse_upload(None, None, 10) == Chunk(0, 10)  # a whole PUT finalizes at its length
    assert parse_upload("bytes 0-9/*", None, 10) == Chunk(0, None)  # more to come
    assert parse_upload("bytes 10-14/15", None, 5) == Chunk(10, 15)  # the last piece
    assert parse_upload(None, "15", 0) == Chunk(15, 15)
    for bad_range, finalize, size in [
        ("bytes 0-9/*", None, 5),  # says 10 bytes, has 5
        ("bytes 5-1/*", None, 0),
        ("bytes 0-4/20", None, 5),  # a length the piece does not end at
        ("items 0-4/5", None, 5),
        (None, "15", 3),  # finalize with content
        (None, "x", 0),
    ]:
        with pytest.raises(ValueError, match=r"content-range|x-finalize-blob-length"):
            parse_upload(bad_range, finalize, size)


def test_the_answers_content_range_says_what_the_blob_holds() -> None:
    assert content_range(55, 55) == "bytes 0-54/55"
    assert content_range(10, None) == "bytes 0-9/*"


def test_a_get_waits_only_with_if_none_match_and_at_most_30_seconds() -> None:
    assert request_timeout(None, etag_given=False) == 0
    assert request_timeout("5", etag_given=False) == 0  # a lone request-timeout is ignored, as by Koukan
    assert request_timeout(None, etag_given=True) == 30
    assert request_timeout("5", etag_given=True) == 5
    assert request_timeout("300", etag_given=True) == 30
    with pytest.raises(ValueError, match="not an integer"):
        request_timeout("soon", etag_given=True)


def test_entity_tags_quoted_or_not() -> None:
    assert etag_of('"7"') == etag_of("7") == etag_of('W/"7"') == "7"
    assert etag_of(None) is None
    assert etag_of(" ") is None
