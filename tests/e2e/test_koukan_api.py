"""Koukan's REST transaction API against the running pipeline: a producer written for Koukan's router creates
transactions (message builder; an RFC 822 body PUT in pieces; a body and an attachment reused by reference),
long-polls them as Koukan's clients do to their delivery at the real SMTP sink, and is refused what it may not do.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import httpx
import pytest

from mailstream.devtools.capture_sink import CaptureSink
from mailstream.events.records import MessageBody
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES
from tests.infra.stack import ACME_KEY, GLOBEX_KEY, Stack
from tests.infra.topics import read_all, topic_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
CREATE = "/koukan/senders/acme/transactions"


def envelope(rcpt: str, **more: Any) -> dict[str, Any]:
    return {"mail_from": {"m": "news@acme.test"}, "rcpt_to": [{"m": rcpt}], **more}


def until_final(client: httpx.Client, url: str, timeout: float = 60.0) -> tuple[dict[str, Any], str]:
    """Koukan's client loop: GET with if-none-match and request-timeout until final_attempt_reason is set."""
    deadline, etag, body = time.monotonic() + timeout, None, {}
    while time.monotonic() < deadline:
        headers = {"request-timeout": "5", **({"if-none-match": etag} if etag else {})}
        r = client.get(url, headers=headers)
        if r.status_code == 304:
            assert r.content == b""
            continue
        assert r.status_code == 200, r.text
        etag, body = r.headers["etag"], r.json()
        if body.get("final_attempt_reason"):
            return body, etag
    raise AssertionError(f"{url} not final in {timeout}s: {body}")


def delivered_to(sink: CaptureSink, rcpt: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in sink.messages:
            if rcpt in m.rcpt_tos:
                return bytes(m.data)
        time.sleep(0.1)
    raise AssertionError(f"nothing delivered to {rcpt}")


def test_a_message_builder_transaction_with_an_uploaded_attachment_is_delivered(
    stack: Stack, sink: CaptureSink
) -> None:
    tag = uuid.uuid4().hex[:10]
    rcpt = f"kb-{tag}@example.com"
    spec = {
        "headers": [
            ["from", [{"address": "news@acme.test", "display_name": "Acme"}]],
            ["to", [{"address": rcpt}]],
            ["subject", f"builder {tag}"],
        ],
        "text_body": [{"content_type": "text/plain", "content": {"inline": f"hello {tag}"}}],
        "file_attachments": [{"content_type": "application/pdf", "filename": "a.pdf", "content": {"create_id": "pdf"}}],
    }
    with stack.client(ACME_KEY) as client:
        r = client.post(CREATE, json=envelope(rcpt, sender={"tag": "spring"}, body={"message_builder": spec}))
        assert r.status_code == 201, r.text
        assert r.headers["etag"]
        blobs = r.json()["body"]["message_builder"]["blob_status"]
        assert blobs["inline0"]["finalized"] is True
        assert "finalized" not in blobs["pdf"]  # to upload
        put = client.put(blobs["pdf"]["uri"], content=b"%PDF-1.4 " + tag.encode())
        assert put.status_code == 200, put.text
        assert put.json() == {}
        assert put.headers["content-range"] == f"bytes 0-{8 + len(tag)}/{9 + len(tag)}"
        body, etag = until_final(client, r.headers["location"])
        assert body["final_attempt_reason"] == "upstream response success"
        assert body["data_response"]["code"] == 250
        assert body["operation"]["status"] == "delivered"
        assert body["operation"]["campaign"] == "spring"  # the sender's tag
        again = client.get(r.headers["location"], headers={"if-none-match": etag, "request-timeout": "5"})
        assert again.status_code == 304  # final: at once, no body
    data = delivered_to(sink, rcpt)
    assert f"builder {tag}".encode() in data
    assert b'filename="a.pdf"' in data


def _bodies_with(stack: Stack, before: dict[tuple[str, int], int], needle: bytes) -> int:
    start = [before.get((BODIES.name, p), 0) for p in range(BODIES.partitions)]
    records = read_all(stack.bootstrap, BODIES.name, BODIES.partitions, start=start, isolation="read_uncommitted")
    return sum(1 for _, _, _, value in records if value is not None and needle in decode(value, MessageBody).data)


def test_a_body_uploaded_in_pieces_then_reused_by_reference_is_written_once(stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:10]
    first, second = f"kr1-{tag}@example.com", f"kr2-{tag}@example.com"
    lines = "body line\n" * 200  # LF endings, as a file on disk: sent with CRLF
    raw = f"From: news@acme.test\nTo: list-{tag}@acme.test\nSubject: reused {tag}\n\n{lines}".encode()
    before = topic_offsets(stack.bootstrap, (BODIES.name,))
    with stack.client(ACME_KEY) as client:
        r = client.post(CREATE, json=envelope(first))
        assert r.status_code == 201, r.text
        uri = r.json()["body"]["blob_status"]["uri"]
        half = len(raw) // 2
        piece = client.put(uri, content=raw[:half], headers={"content-range": f"bytes 0-{half - 1}/*"})
        assert piece.status_code == 200, piece.text
        assert piece.headers["content-range"] == f"bytes 0-{half - 1}/*"
        gap = client.put(uri, content=b"x", headers={"content-range": f"bytes {half + 5}-{half + 5}/*"})
        assert gap.status_code == 416
        assert gap.headers["content-range"] == f"bytes 0-{half - 1}/*"  # what it holds, to resume from
        last = client.put(uri, content=raw[half:], headers={"content-range": f"bytes {half}-{len(raw) - 1}/{len(raw)}"})
        assert last.status_code == 200, last.text
        retried = client.put(uri, content=raw)  # a whole PUT retried after success: the same answer
        assert retried.status_code == 200, retried.text
        assert until_final(client, r.headers["location"])[0]["final_attempt_reason"] == "upstream response success"

        reuse = client.post(CREATE, json=envelope(second, body={"reuse_uri": uri}))
        assert reuse.status_code == 201, reuse.text
        assert reuse.json()["body"]["blob_status"]["finalized"] is True
        body, _ = until_final(client, reuse.headers["location"])
        assert body["final_attempt_reason"] == "upstream response success", body["operation"]["last_response"]
    assert f"reused {tag}".encode() in delivered_to(sink, first)
    assert f"reused {tag}".encode() in delivered_to(sink, second)
    assert _bodies_with(stack, before, f"reused {tag}".encode()) == 1  # two messages, one write of the body


def test_an_attachment_is_reused_by_reference(stack: Stack, sink: CaptureSink) -> None:
    tag = uuid.uuid4().hex[:10]
    parts = {"content_type": "application/octet-stream", "filename": "data.bin"}

    def spec(content: dict[str, str]) -> dict[str, Any]:
        text = {"content_type": "text/plain", "content": {"inline": f"see attached {tag}"}}
        return {
            "headers": [["subject", f"attach {tag}"]],
            "text_body": [text],
            "file_attachments": [{**parts, "content": content}],
        }

    with stack.client(ACME_KEY) as client:
        r = client.post(
            CREATE, json=envelope(f"ka1-{tag}@example.com", body={"message_builder": spec({"create_id": "bin"})})
        )
        assert r.status_code == 201, r.text
        uri = r.json()["body"]["message_builder"]["blob_status"]["bin"]["uri"]
        assert client.put(uri, content=f"payload {tag}".encode()).status_code == 200
        until_final(client, r.headers["location"])
        reuse = client.post(
            CREATE, json=envelope(f"ka2-{tag}@example.com", body={"message_builder": spec({"reuse_uri": uri})})
        )
        assert reuse.status_code == 201, reuse.text
        assert reuse.json()["body"]["message_builder"]["blob_status"]["bin"]["finalized"] is True
        assert until_final(client, reuse.headers["location"])[0]["final_attempt_reason"] == "upstream response success"
    encoded = base64.b64encode(f"payload {tag}".encode())
    assert encoded in delivered_to(sink, f"ka2-{tag}@example.com")


def test_a_tenant_neither_reads_nor_reuses_another_tenants_transactions(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:10]
    raw = f"From: news@acme.test\r\nSubject: private {tag}\r\n\r\nsecret\r\n"
    with stack.client(ACME_KEY) as acme, stack.client(GLOBEX_KEY) as globex:
        r = acme.post(CREATE, json=envelope(f"ki-{tag}@example.com", body={"inline": raw}))
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        tx_id = url.rsplit("/", 1)[1]
        assert globex.get(url).status_code == 404
        assert globex.get(url).headers["content-type"] == "application/problem+json"
        assert globex.post(f"/koukan/transactions/{tx_id}/cancel").status_code == 404
        assert globex.post(CREATE, json=envelope("x@example.com")).status_code == 404  # not its sender
        stolen = globex.post(
            "/koukan/senders/globex/transactions",
            json={
                "mail_from": {"m": "a@globex.test"},
                "rcpt_to": [{"m": "x@example.com"}],
                "body": {"reuse_uri": f"/transactions/{tx_id}/body"},
            },
        )
        assert stolen.status_code == 422
        assert stolen.json()["errors"][0]["field"] == "body.reuse_uri"


def test_bad_requests_are_4xx_problems_and_a_pending_transaction_can_be_cancelled(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:10]
    with stack.client(ACME_KEY) as client:
        for body, status in [
            (b"{not json", 400),
            (b'{"mail_from": {"m": "a@acme.test"}, "rcpt_to": {"m": "b@example.com"}}', 422),
            (b'{"mail_from": {"m": "a@acme.test"}, "rcpt_to": [{"m": "b@example.com"}], "retry": {}}', 422),
            (
                b'{"mail_from": {"m": "a@acme.test"}, "rcpt_to": [{"m": "b@example.com"}], '
                b'"body": {"reuse_uri": "/transactions/nope/body"}}',
                422,
            ),
        ]:
            r = client.post(CREATE, content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, r.text
            assert r.headers["content-type"] == "application/problem+json"
        assert httpx.post(stack.api + CREATE, json=envelope("b@example.com")).status_code == 401
        r = client.post(CREATE, json=envelope(f"kc-{tag}@example.com"))
        url = r.headers["location"]
        assert (
            client.get(url, headers={"if-none-match": r.headers["etag"], "request-timeout": "soon"}).status_code == 400
        )
        assert client.patch(url, json={"rcpt_to": [{"m": "c@example.com"}]}).status_code == 400  # not incremental
        heartbeat = client.patch(url)
        assert heartbeat.status_code == 200
        assert heartbeat.json()["operation"]["status"] == "awaiting_blobs"
        assert client.post(url + "/cancel").status_code == 200
        body = client.get(url).json()
        assert body["cancelled"] is True
        assert body["final_attempt_reason"] == "downstream cancelled"
        late = client.put(url + "/body", content=b"Subject: late\r\n\r\nx\r\n")
        assert late.status_code == 409


def test_an_idempotency_key_creates_one_transaction(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:10]
    request = envelope(f"kk-{tag}@example.com", body={"inline": f"Subject: once {tag}\r\n\r\nx\r\n"})
    with stack.client(ACME_KEY) as client:
        first = client.post(CREATE, json=request, headers={"Idempotency-Key": tag})
        again = client.post(CREATE, json=request, headers={"Idempotency-Key": tag})
        assert first.status_code == again.status_code == 201
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"


def test_a_session_with_basic_auth_follows_the_absolute_uris_it_is_given(stack: Stack, sink: CaptureSink) -> None:
    """A Koukan sender's requests.Session with `auth = ("", key)`: the one change beside its base URL."""
    tag = uuid.uuid4().hex[:10]
    rcpt = f"kba-{tag}@example.com"
    with httpx.Client(base_url=stack.api + "/koukan", auth=("", ACME_KEY), timeout=30.0) as session:
        r = session.post("/senders/acme/transactions", json=envelope(rcpt))
        assert r.status_code == 201, r.text
        put = session.put(
            r.json()["body"]["blob_status"]["uri"], content=f"Subject: basic {tag}\r\n\r\nhi\r\n".encode()
        )
        assert put.status_code == 200, put.text
        assert until_final(session, r.headers["location"])[0]["final_attempt_reason"] == "upstream response success"
    assert f"basic {tag}".encode() in delivered_to(sink, rcpt)


def test_a_suppressed_recipient_is_refused_at_the_door_with_a_rcpt_response(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:10]
    rcpt = f"ks-{tag}@example.com"
    with stack.client(ACME_KEY) as client:
        added = client.post("/api/suppressions", json={"entries": [{"address": rcpt, "reason": "unsubscribed"}]})
        assert added.status_code == 202, added.text
        deadline = time.monotonic() + 30
        while not client.get("/api/suppressions", params={"search": tag}).json()["suppressions"]:
            assert time.monotonic() < deadline, "the suppression was not listed"
            time.sleep(0.2)
        r = client.post(CREATE, json=envelope(rcpt, body={"inline": f"Subject: no {tag}\r\n\r\nx\r\n"}))
        assert r.status_code == 201, r.text  # as Koukan: the transaction exists; its rcpt_response refuses
        body = r.json()
        assert body["rcpt_response"][0]["code"] == 550
        assert "suppress" in body["rcpt_response"][0]["message"]
        assert body["final_attempt_reason"] == "upstream rcpt_response permfail"
        assert body["operation"] == {
            "name": f"transactions/{r.headers['location'].rsplit('/', 1)[1]}",
            "status": "refused",
            "done": True,
        }
        again = client.get(r.headers["location"], headers={"if-none-match": r.headers["etag"]})
        assert again.status_code == 304  # done: at once
