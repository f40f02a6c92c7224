"""mailstream's status model shown as Koukan's transaction JSON (koukan_view), Koukan's message builder rendered
(koukan_mime), and the replica's upload store's offset rules (koukan_store)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailstream.events.records import AttemptRecord, SmtpResponse, TransactionStatus
from mailstream.ingest.koukan_mime import BuildError, render
from mailstream.ingest.koukan_request import Builder, Chunk
from mailstream.ingest.koukan_store import BODY, KBlob, KoukanStore, KTx, UploadRefused
from mailstream.ingest.koukan_view import responses, tx_json

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
BASE = "http://ingest.test/koukan"


def status(kind: str, *attempts: SmtpResponse, reason: str | None = None) -> TransactionStatus:
    return TransactionStatus(
        id="t1",
        version=len(attempts) + 1,
        status=kind,
        queue="acme@example.com",
        tenant="acme",
        sender="a@acme.test",
        recipient="b@example.com",
        message_id="m@acme.test",
        created_at=T0,
        updated_at=T0,
        num_attempts=len(attempts),
        final_reason=reason,
        attempts=tuple(
            AttemptRecord(
                attempt=n + 1,
                outcome="DELIVERED" if r.code < 300 else "TRANSIENT" if r.code < 500 else "PERMANENT",
                response=r,
                egress_source="default",
                egress_path="default->example.com",
                started_at=T0,
                completed_at=T0,
            )
            for n, r in enumerate(attempts)
        ),
    )


def test_delivered_shows_the_data_response_and_success() -> None:
    ok = SmtpResponse(code=250, enhanced_code="2.0.0", content="queued as X", command="DATA")
    out = responses(status("delivered", ok))
    assert out["data_response"] == {"code": 250, "message": "2.0.0 queued as X"}
    assert out["rcpt_response"][0]["code"] == 250
    assert out["mail_response"]["code"] == 250
    assert out["final_attempt_reason"] == "upstream response success"


def test_a_deferral_at_rcpt_shows_in_rcpt_response_and_is_not_final() -> None:
    later = SmtpResponse(code=451, enhanced_code="4.7.1", content="greylisted", command="RCPT")
    out = responses(status("deferred", later))
    assert out["rcpt_response"] == [{"code": 451, "message": "4.7.1 greylisted"}]
    assert "data_response" not in out
    assert "final_attempt_reason" not in out


def test_a_connect_failure_is_a_mail_response_as_koukan_reports_it() -> None:
    refused = SmtpResponse(code=421, enhanced_code="4.4.1", content="connection refused", command="CONNECT")
    out = responses(status("deferred", refused))
    assert out["mail_response"]["code"] == 421
    assert "rcpt_response" not in out


def test_bounces_expiry_and_cancel_name_koukans_final_reasons() -> None:
    no = SmtpResponse(code=550, enhanced_code="5.1.1", content="no such user", command="RCPT")
    assert responses(status("bounced", no))["final_attempt_reason"] == "upstream rcpt_response permfail"
    suppressed = responses(status("bounced", reason="suppressed: complaint"))
    assert suppressed["rcpt_response"][0] == {"code": 550, "message": "5.7.1 suppressed: complaint"}
    assert responses(status("expired"))["final_attempt_reason"] == "retry policy deadline"
    assert responses(status("cancelled"))["final_attempt_reason"] == "downstream cancelled"


def test_a_written_transaction_carries_the_mailstream_operation_and_its_version_as_etag() -> None:
    body, etag, done = tx_json(BASE, "t1", None, [], status("scheduled"))
    assert etag == '"1"'
    assert not done
    assert body["operation"]["name"] == "transactions/t1"
    assert body["operation"]["status"] == "scheduled"
    assert body["body"] == {"blob_status": {"uri": f"{BASE}/transactions/t1/body", "finalized": True}}
    assert body["rcpt_to"] == [{}]
    assert body["retry"] == {}


def _tx(state: str, spec: dict[str, object] | None = None, reason: str | None = None) -> KTx:
    return KTx("t1", "acme", "k", "a@acme.test", "b@example.com", None, spec, state, T0, T0, reason)  # type: ignore[arg-type]


def test_a_transaction_awaiting_its_body_names_where_to_put_it() -> None:
    body, etag, done = tx_json(BASE, "t1", _tx("awaiting"), [KBlob("t1", BODY, "acme", T0)], None)
    assert body["body"] == {"blob_status": {"uri": f"{BASE}/transactions/t1/body"}}  # not finalized
    assert body["operation"] == {"name": "transactions/t1", "status": "awaiting_blobs", "done": False}
    assert etag == '"k1"'
    assert not done


def test_an_abandoned_transaction_is_done_with_koukans_reason() -> None:
    body, _, done = tx_json(BASE, "t1", _tx("ended", reason="downstream timeout"), [], None)
    assert done
    assert body["final_attempt_reason"] == "downstream timeout"
    cancelled, _, _ = tx_json(BASE, "t1", _tx("ended", reason="downstream cancelled"), [], None)
    assert cancelled["cancelled"] is True
    assert cancelled["operation"]["status"] == "cancelled"


SPEC = {
    "headers": [
        ["from", [{"address": "alice@acme.test", "display_name": "Alice"}]],
        ["to", [{"address": "bob@example.com"}]],
        ["subject", "Invoice"],
        ["date", {"unix_secs": 1764669600, "tz_offset": 3600}],
        ["message-id", ["inv-1@acme.test"]],
    ],
    "text_body": [
        {"content_type": "text/plain", "content": {"inline": "Grüße, your invoice"}},
        {"content_type": "text/html", "content": {"create_id": "html"}},
    ],
    "related_attachments": [{"content_type": "image/png", "content_id": "logo", "content": {"create_id": "logo"}}],
    "file_attachments": [{"content_type": "application/pdf", "filename": "inv.pdf", "content": {"create_id": "pdf"}}],
}


def test_the_builder_renders_alternatives_related_and_attachments() -> None:
    blobs = {
        "inline0": "Grüße, your invoice".encode(),
        "html": b"<img src=cid:logo>",
        "logo": b"\x89PNG",
        "pdf": b"%PDF",
    }
    data = render(Builder.model_validate(SPEC), blobs, T0, lambda: "<unused@x>")
    assert data.endswith(b"\r\n")
    assert max(data) < 128
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["From"] == "Alice <alice@acme.test>"
    assert msg["Message-ID"] == "<inv-1@acme.test>"
    assert msg["Date"] == "Tue, 02 Dec 2025 11:00:00 +0100"
    assert msg.get_content_type() == "multipart/mixed"
    kinds = [p.get_content_type() for p in msg.walk()]
    assert kinds == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
    ]
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert text.get_content().strip() == "Grüße, your invoice"
    pdf = next(p for p in msg.walk() if p.get_content_type() == "application/pdf")
    assert pdf.get_filename() == "inv.pdf"
    assert pdf.get_content() == b"%PDF"


def test_a_missing_message_id_and_date_are_added() -> None:
    spec = Builder.model_validate({"text_body": [{"content_type": "text/plain", "content": {"inline": "hi"}}]})
    msg = email.message_from_bytes(render(spec, {"inline0": b"hi"}, T0, lambda: "<new@x>"), policy=email.policy.default)
    assert msg["Message-ID"] == "<new@x>"
    assert msg["Date"] is not None


def test_text_that_is_not_utf8_does_not_build() -> None:
    spec = Builder.model_validate({"text_body": [{"content_type": "text/plain", "content": {"create_id": "t"}}]})
    with pytest.raises(BuildError, match="not UTF-8"):
        render(spec, {"t": b"\xff\xfe"}, T0, lambda: "<x@y>")


@pytest.fixture
def store(tmp_path: Path) -> KoukanStore:
    s = KoukanStore(tmp_path / "koukan.sqlite3")
    s.create(_tx("awaiting"), [KBlob("t1", BODY, "acme", T0)])
    return s


def test_pieces_append_at_their_offset_and_a_retransmitted_overlap_is_trimmed(store: KoukanStore) -> None:
    blob = store.blob("t1", BODY)
    assert blob is not None
    blob = store.append(blob, Chunk(0, None), b"hello ", 100)
    blob = store.append(blob, Chunk(3, None), b"lo wor", 100)  # bytes 3-5 again, then 3 new
    assert not blob.finalized
    blob = store.append(blob, Chunk(9, 11), b"ld", 100)
    stored = store.blob("t1", BODY)
    assert stored is not None
    assert stored.data == b"hello world"
    assert stored.finalized


def test_a_gap_or_a_piece_past_the_limit_is_refused_with_what_the_blob_holds(store: KoukanStore) -> None:
    blob = store.blob("t1", BODY)
    assert blob is not None
    blob = store.append(blob, Chunk(0, None), b"abc", 10)
    with pytest.raises(UploadRefused) as gap:
        store.append(blob, Chunk(5, None), b"xyz", 10)
    assert gap.value.status == 416
    assert gap.value.blob.length == 3
    with pytest.raises(UploadRefused) as big:
        store.append(blob, Chunk(3, None), b"x" * 20, 10)
    assert big.value.status == 413


def test_old_transactions_are_pruned_with_their_blobs(store: KoukanStore) -> None:
    assert store.prune(T0 - timedelta(hours=1)) == 0
    assert store.prune(T0 + timedelta(days=1, seconds=1)) == 1
    assert store.tx("t1") is None
    assert store.blobs("t1") == []
