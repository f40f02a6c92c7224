"""A Koukan transaction whose blobs are complete, handed to the shared intake path (`intake.submission`): the
same routing, early refusals (suppression, draining and disabled queues), tenant rights, body write and
transactional commit as POST /api/inject/v1, under the same request deadline.

Blobs reused by reference are resolved here: a body reuses the earlier transaction's BodyRef (nothing is written
to mail.bodies again); a message-builder part reuses the earlier part's content. A blob is reused only within its
tenant, only once complete, and only within the reuse window (koukan_store.REUSE_WINDOW).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime

from prometheus_client import Counter

from mailstream.config.model import IngestConfig
from mailstream.core.clock import Clock
from mailstream.core.line_length import overlong_line
from mailstream.events.group_commit import OutcomeUnknown, Write
from mailstream.events.kafka import KafkaUnavailable
from mailstream.events.records import BodyRef
from mailstream.ingest.inject import unavailable
from mailstream.ingest.koukan_mime import BuildError, render
from mailstream.ingest.koukan_request import BlobRef, Builder, parse_reuse_uri
from mailstream.ingest.koukan_store import BODY, REUSE_WINDOW, KBlob, KoukanStore, KTx
from mailstream.ingest.problems import Problem, invalid
from mailstream.intake.submission import Outgoing, StoredBody, Submitter
from mailstream.intake.summary import attachment_count, message_id_of, summary_headers
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
SUBMITTED = Counter("mailstream_koukan_transactions_total", "Koukan API transactions written, by outcome", ["outcome"])
REUSED = Counter("mailstream_koukan_blobs_reused_total", "Blobs reused by reference instead of uploaded", ["kind"])


def reused_blob(store: KoukanStore, field: str, uri: str, tenant: str | None, *, body: bool, now: datetime) -> KBlob:
    """The complete blob `uri` names, of the same tenant and young enough; 422 naming `field` otherwise (an unknown
    blob and another tenant's read the same)."""
    ref: BlobRef | None = parse_reuse_uri(uri)
    if ref is None or (ref.blob_id is None) != body:
        want = "/transactions/<id>/body" if body else "/transactions/<id>/blob/<blob id>"
        raise invalid([(field, f"a reuse_uri here is {want}")])
    blob = store.blob(ref.tx_id, ref.blob_id or BODY)
    if blob is None or blob.tenant != tenant:
        raise invalid([(field, f"no blob {uri!r} of this sender on this replica (blobs are kept a day)")])
    if not blob.finalized or (body and blob.ref is None):
        raise invalid([(field, f"blob {uri!r} is not complete yet: upload it first")])
    if now - blob.created > REUSE_WINDOW:
        raise invalid([(field, f"blob {uri!r} is older than a day: upload it again")])
    REUSED.labels("body" if body else "part").inc()
    return blob


def normalized(data: bytes, now: datetime, message_id: str) -> bytes:
    """An RFC 822 body as uploaded, with CRLF line endings and a final CRLF (the wire form every door writes), and
    a Message-ID and Date when it has none (as the inject API adds to raw content)."""
    out = b"\r\n".join(data.replace(b"\r\n", b"\n").split(b"\n"))
    out = out if out.endswith(b"\r\n") else out + b"\r\n"
    head = out.split(b"\r\n\r\n", 1)[0]
    names = {line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")}
    added = b"" if b"message-id" in names else f"Message-ID: {message_id}\r\n".encode()
    if b"date" not in names:
        added += f"Date: {format_datetime(now)}\r\n".encode()
    return added + out


class KoukanIntake:
    def __init__(self, config: IngestConfig, submitter: Submitter, store: KoukanStore, clock: Clock) -> None:
        self._config, self._submitter, self._store, self._clock = config, submitter, store, clock
        self.writing: set[str] = set()  # transactions being written now: a second upload waits its turn (409)
        self._settling: set[asyncio.Task[None]] = set()

    def message(self, tx: KTx, blobs: list[KBlob], new_message_id: str) -> Outgoing | tuple[str, int, str]:
        """The transaction's message, or (field, code, message) refusing it: a body that does not build or is too
        large, or a From the tenant may not use."""
        meta: dict[str, object] = {"campaign": tx.campaign} if tx.campaign else {}
        if tx.spec is None:
            body = next(b for b in blobs if b.blob_id == BODY)
            if body.ref is not None:  # reused: the body as it was written, by reference
                s = body.summary
                stored = StoredBody(body.ref, s.get("attachment_count"))
                return Outgoing(tx.rcpt, b"", s["message_id"], s["headers"], meta, tx_id=tx.id, stored=stored)
            data = normalized(body.data or b"", self._clock(), new_message_id)
            overlong = overlong_line(body.data or b"")  # numbered as uploaded, before the headers we add
            if overlong is not None:
                return ("data_response", 554, f"5.6.0 {overlong.describe('body line')}")
        else:
            contents = {}
            for b in blobs:
                if b.blob_id == BODY:
                    continue
                source = self._store.blob(*b.summary["reuse"]) if "reuse" in b.summary else b
                if source is None or source.data is None:
                    return ("data_response", 554, f"5.6.0 blob {b.blob_id} is no longer kept: upload it again")
                contents[b.blob_id] = source.data
            try:
                data = render(Builder.model_validate(tx.spec), contents, self._clock(), lambda: new_message_id)
            except BuildError as exc:
                return ("data_response", 554, f"5.6.0 {exc}")
        if len(data) > self._config.max_message_size:
            limit = self._config.max_message_size
            return ("data_response", 552, f"5.3.4 the message is {len(data)} bytes; at most {limit}")
        headers = summary_headers(data)
        if tx.tenant is not None:
            refused = self._submitter.policies.from_refusal(tx.tenant, headers.get("From"))
            if refused is not None:
                return ("data_response", 550, f"5.7.1 {refused}")
        return Outgoing(tx.rcpt, data, message_id_of(headers), headers, meta, tx_id=tx.id)

    async def submit(self, tx: KTx, new_message_id: str, extra: Sequence[Write] = ()) -> None:
        """Write the complete transaction through the intake path; its state afterwards says what happened:
        `submitted`, or `refused` with the response. 503 (a Problem) when the log did not take it: the
        transaction stays `awaiting`, so the upload can be retried (409 while the outcome is not known)."""
        if tx.id in self.writing:
            raise Problem(409, "Transaction being written", "retry shortly", headers={"Retry-After": "1"})
        self.writing.add(tx.id)
        settled = True
        try:
            blobs = self._store.blobs(tx.id)
            made = self.message(tx, blobs, new_message_id)
            if isinstance(made, tuple):
                self._refuse(tx, *made)
                return
            deadline = asyncio.get_running_loop().time() + self._config.request_deadline.total_seconds()
            try:
                async with asyncio.timeout_at(deadline):
                    prepared = await self._submitter.prepare(
                        [made], sender=tx.mail_from, bound_tenant=tx.tenant, protocol="HTTP"
                    )
                if prepared.result.failed:
                    self._refuse(tx, "rcpt_response", 550, f"5.7.1 {prepared.result.failed[0][1]}")
                    return
                timeout = max(0.0, deadline - asyncio.get_running_loop().time())
                try:
                    await self._submitter.commit(prepared, extra, timeout=timeout)
                except OutcomeUnknown as exc:
                    settled = False
                    self._settle_later(tx, made, prepared.result.accepted[0].body, exc.outcome)
                    raise unavailable("the event log did not confirm the write in time; retry to learn") from None
            except TimeoutError:
                raise unavailable("the event log did not take the transaction in time; nothing was written") from None
            except KafkaUnavailable as exc:
                raise unavailable(f"the event log is not accepting writes: {exc}; nothing was written") from None
            self._written(tx, made, prepared.result.accepted[0].body)
        finally:
            if settled:
                self.writing.discard(tx.id)

    def _written(self, tx: KTx, msg: Outgoing, ref: BodyRef) -> None:
        body = self._store.blob(tx.id, BODY) or KBlob(tx.id, BODY, tx.tenant, self._clock(), None, ref.size, ref.size)
        uploaded = hashlib.sha256(body.data).hexdigest() if body.data is not None else body.sha256
        body.data, body.ref, body.sha256 = None, ref, uploaded  # the upload's hash: a retried PUT is recognised
        body.summary = {
            "message_id": msg.message_id,
            "headers": msg.headers,
            "attachment_count": msg.stored.attachment_count if msg.stored else attachment_count(msg.data),
        }
        self._store.save_blob(body)  # the body's reference, for a later transaction to reuse
        tx.state = "submitted"
        self._store.update(tx, self._clock())
        SUBMITTED.labels("written").inc()
        log.info("koukan_transaction_written", id=tx.id, tenant=tx.tenant, reused=msg.stored is not None)

    def _refuse(self, tx: KTx, field: str, code: int, message: str) -> None:
        tx.state, tx.response = "refused", {"field": field, "code": code, "message": message}
        tx.reason = f"upstream {field} permfail" if field == "rcpt_response" else "upstream response permfail"
        self._store.update(tx, self._clock())
        SUBMITTED.labels("refused").inc()
        log.info("koukan_transaction_refused", id=tx.id, tenant=tx.tenant, response=message)

    def _settle_later(self, tx: KTx, msg: Outgoing, ref: BodyRef, outcome: asyncio.Future[None]) -> None:
        async def settle() -> None:
            try:
                await outcome
            except Exception:  # aborted: nothing was written; the upload may be retried
                pass
            else:
                self._written(tx, msg, ref)
            finally:
                self.writing.discard(tx.id)

        task = asyncio.get_running_loop().create_task(settle())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)


def fingerprint(sender: str, raw: bytes) -> str:
    """An Idempotency-Key's request: the sender path and the body."""
    return hashlib.sha256(sender.encode() + b"\0" + raw).hexdigest()
