"""Reports as real systems send them (tests/unit/core/reports: Postfix, Exchange, Gmail DSNs; Yahoo and AOL
feedback reports, our own text in their formats), parsed and tied to the transaction they are about."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstream.core.report_parse import RecipientStatus, Report, parse
from mailstream.core.trace_header import TraceRef

SAMPLES = Path(__file__).with_name("reports")
ANN = TraceRef("5e0c8a7f3b2d4e1f9a6b7c8d9e0f1a2b", "acme", "ann@example.com")
CAROL = TraceRef("9f8e7d6c5b4a39281706f5e4d3c2b1a0", "acme", "carol@yahoo.example")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_postfix_dsn_returns_headers_with_the_trace_header() -> None:
    report = parse(sample("postfix_dsn.eml"), ["bounces@bounces.acme.test"])
    assert report is not None
    assert (report.kind, report.ref, report.verp_id, report.transaction_id) == ("dsn", ANN, None, ANN.transaction_id)
    assert report.recipients == (
        RecipientStatus(
            recipient="ann@example.com",
            action="failed",
            status="5.1.1",
            code=550,
            diagnostic="<ann@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
            remote_mta="mailstore.example.com",
        ),
    )
    assert report.failed() == report.recipients


def test_exchange_ndr_returns_the_whole_message() -> None:
    report = parse(sample("exchange_dsn.eml"))
    assert report is not None
    assert report.ref == ANN
    (dave,) = report.failed()
    assert (dave.recipient, dave.status, dave.code) == ("dave@corp.example.net", "5.1.10", 550)
    assert dave.diagnostic == "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"


def test_gmail_dsn_without_a_trace_header_is_matched_by_the_verp_address_it_was_sent_to() -> None:
    to = ["b-5e0c8a7f3b2d4e1f9a6b7c8d9e0f1a2b@bounces.acme.test"]
    report = parse(sample("gmail_dsn.eml"), to)
    assert report is not None
    assert (report.ref, report.verp_id) == (None, ANN.transaction_id)
    assert report.transaction_id == ANN.transaction_id
    (erin,) = report.failed()
    assert (erin.recipient, erin.status, erin.code) == ("erin@gmail.example", "5.7.1", 550)  # 550-5.7.1: multiline
    assert erin.diagnostic.startswith("[192.0.2.10] Our system has detected that this message is likely unsolicited")
    assert parse(sample("gmail_dsn.eml"), ["bounces@bounces.acme.test"]) == Report(
        "dsn", None, None, recipients=report.recipients
    )  # no id anywhere: unmatched, still parsed


def test_yahoo_feedback_report_names_the_complaint_and_the_original_recipient() -> None:
    report = parse(sample("yahoo_arf.eml"), ["fbl@bounces.acme.test"])
    assert report == Report(
        "feedback",
        CAROL,
        None,
        feedback_type="abuse",
        user_agent="Yahoo!-Mail-Feedback/2.0",
        original_recipient="carol@yahoo.example",  # Original-Rcpt-To, not the redacted To
    )


def test_aol_feedback_report_with_headers_only_and_a_folded_trace_header() -> None:
    report = parse(sample("aol_arf.eml"))
    assert report is not None
    assert (report.kind, report.ref, report.feedback_type) == ("feedback", CAROL, "abuse")
    assert report.original_recipient == "carol@yahoo.example"  # no Original-Rcpt-To: the returned To


def test_a_delay_notice_has_no_failed_recipient() -> None:
    data = sample("postfix_dsn.eml").replace(b"Action: failed", b"Action: delayed").replace(b"5.1.1", b"4.4.1")
    report = parse(data)
    assert report is not None
    assert report.failed() == ()
    assert (report.recipients[0].action, report.recipients[0].status) == ("delayed", "4.4.1")


def test_a_trace_header_under_another_name_is_read_when_named() -> None:
    data = sample("postfix_dsn.eml").replace(b"X-KumoRef:", b"X-Acme-Ref:")
    report = parse(data)
    assert report is not None
    assert report.ref is None
    named = parse(data, header_name="X-Acme-Ref")
    assert named is not None
    assert named.ref == ANN


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Subject: hello\r\n\r\nan ordinary message, not a report\r\n",
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n--x--\r\n",
        bytes(range(256)) * 4,
    ],
)
def test_anything_else_is_no_report_and_never_an_exception(data: bytes) -> None:
    assert parse(data) is None


def test_a_report_whose_parts_are_garbled_is_still_parsed_as_far_as_it_goes() -> None:
    data = (
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: message/delivery-status\r\n\r\n\xff\xfe garbage\r\n\r\nAction: failed\r\n--b--\r\n"
    )
    report = parse(data)
    assert report is not None
    assert report.transaction_id is None
    assert [(r.recipient, r.action, r.code) for r in report.recipients] == [(None, "failed", 550)]
    empty = b"Content-Type: multipart/report; report-type=delivery-status; boundary=\r\n\r\n\xff\xfe"
    assert parse(empty) == Report("dsn", None, None)  # a report of nothing: kept as unmatched
