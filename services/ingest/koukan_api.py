"""Koukan's REST transaction API (jsbucy/koukan's router) beside the inject API, under /koukan.

POST /koukan/senders/{sender}/transactions creates a transaction (one recipient) with its body inline, reused from
an earlier transaction, as a message builder, or left out to be PUT to /koukan/transactions/{id}/body; builder
parts with `create_id` are PUT to /koukan/transactions/{id}/blob/{blob id}. Once every blob is complete the
transaction goes through the shared intake path (koukan_intake). GET /koukan/transactions/{id} reads it
(koukan_view) with Koukan's ETag / If-None-Match / request-timeout long-poll; PATCH with an empty body is a
heartbeat; POST .../cancel cancels. The sender in the path is the tenant; a tenant's key uses its own only.
docs/api.md maps each route and field and says what is not supported.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError

from mailstream.config.model import IngestConfig
from mailstream.core.clock import Clock
from mailstream.events.records import IdempotentAnswer
from mailstream.events.topics import ANSWERS
from mailstream.ingest import api_models as api
from mailstream.ingest.auth import KeyRing, Principal
from mailstream.ingest.idempotency import Answers, idempotency_key
from mailstream.ingest.koukan_intake import KoukanIntake, fingerprint, reused_blob
from mailstream.ingest.koukan_request import (
    BLOB_ID,
    FINALIZE_BLOB_HEADER,
    PREFIX,
    CreateTx,
    content_range,
    create_errors,
    etag_of,
    parse_upload,
    request_timeout,
)
from mailstream.ingest.koukan_store import BODY, PENDING_TTL, REUSE_WINDOW, KBlob, KoukanStore, KTx, UploadRefused
from mailstream.ingest.koukan_view import tx_json
from mailstream.ingest.limits import KeyLimits, too_many
from mailstream.ingest.problems import PROBLEM_JSON, Problem, from_validation_error, invalid, parse_body, read_body
from mailstream.ingest.status_view import StatusView, TooManyWaiters
from mailstream.intake.submission import Submitter, new_transaction_id

_SENDER = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


_ETAG = {"ETag": {"description": 'the version, quoted ("7")', "required": True, "schema": {"type": "string"}}}
_RANGE = {"content-range": {"description": "what the blob holds", "required": True, "schema": {"type": "string"}}}
_UPLOAD: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored: `{}` and Content-Range", "headers": _RANGE},
    **api.problems((400, "A malformed Content-Range"), 401, 404, 409, 413, 422, 503),
    416: {
        "description": "The piece does not continue the blob; Content-Range says what it holds",
        "headers": _RANGE,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
}
_BYTES = {"requestBody": {"required": False, "content": {"application/octet-stream": {"schema": {}}}}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "1 to 255 visible ASCII characters: a retry with the same key and body creates nothing twice",
    "schema": {"type": "string"},
}
CREATE_EXAMPLE = {
    "mail_from": {"m": "alice@example.com"},
    "rcpt_to": [{"m": "bob@example.com"}],
    "body": {"inline": "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nhello\r\n"},
}


def _not_found(tx_id: str) -> Problem:
    return Problem(404, "Not found", f"no transaction {tx_id!r} visible to this API key")


def koukan_router(
    config: IngestConfig,
    submitter: Submitter,
    view: StatusView,
    clock: Clock,
    keys: KeyRing,
    limits: KeyLimits,
    answers: Answers,
) -> APIRouter:
    store = KoukanStore(config.status_db.with_name(config.status_db.name + ".koukan"))
    intake = KoukanIntake(config, submitter, store, clock)
    changed: dict[str, set[asyncio.Future[None]]] = {}  # long-polls on transactions only this replica knows
    router = APIRouter(prefix=PREFIX, tags=["koukan"])

    def principal(request: Request) -> Principal:
        """Bearer, or Basic with the key as password (or user): `requests`' `session.auth = ("", key)`."""
        header = request.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
            except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
                user = password = ""
            header = f"Bearer {password or user}"
        return keys.authenticate(header)

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    def local_tx(tx_id: str, who: Principal) -> KTx | None:
        tx = store.tx(tx_id)
        if tx is not None and not who.may_see(tx.tenant):
            raise _not_found(tx_id)
        stale = tx is not None and clock() - tx.updated > PENDING_TTL and tx.id not in intake.writing
        if tx is not None and tx.state == "awaiting" and stale:
            tx.state, tx.reason = "ended", "downstream timeout"  # its blobs stopped coming
            store.update(tx, clock())
        return tx

    def notify(tx_id: str) -> None:
        for woken in changed.pop(tx_id, ()):
            if not woken.done():
                woken.set_result(None)

    def read(request: Request, tx_id: str, who: Principal) -> tuple[dict[str, object], str, bool]:
        tx = local_tx(tx_id, who)
        status = view.get(tx_id)
        if status is not None and not who.may_see(status.tenant):
            raise _not_found(tx_id)
        if status is None and tx is None:
            raise _not_found(tx_id)
        return tx_json(base(request), tx_id, tx, store.blobs(tx_id) if tx else [], status)

    def answer(request: Request, tx_id: str, who: Principal, code: int = 200, **headers: str) -> JSONResponse:
        body, etag, _ = read(request, tx_id, who)
        return JSONResponse(body, code, headers={"ETag": etag, **headers})

    @router.post(
        "/senders/{sender}/transactions",
        status_code=201,
        responses={
            201: {"description": "Created: Location names it, `body` the blobs to upload", "headers": _ETAG},
            **api.problems(400, 401, 403, 404, 409, 413, 422, 429, 503, retry_after=(409,)),
        },
        openapi_extra={**api.json_body(CreateTx, example=CREATE_EXAMPLE), "parameters": [IDEMPOTENCY_KEY]},
    )
    async def create(sender: str, request: Request) -> Response:
        """Koukan's create: 201 with Location and ETag; the blobs to upload are named in `body`."""
        who = principal(request)
        with limits.inject(who):
            return await _create(sender, request, who)

    async def _create(sender: str, request: Request, who: Principal) -> Response:
        if not re.fullmatch(_SENDER, sender) or not (who.admin or sender == who.tenant):
            raise Problem(404, "Not found", f"no sender {sender!r} for this API key (the sender is the tenant)")
        raw = await read_body(request, config.request_body_limit)
        key = idempotency_key(request.headers.get("idempotency-key"))
        scoped = None if key is None else f"{who.key_id}/koukan/{key}"
        printed = fingerprint(sender, raw)
        if scoped is not None:
            stored = answers.claim(scoped, printed)
            if stored is not None:
                tx_id = json.loads(stored.body)["transaction"]
                location = f"{base(request)}/transactions/{tx_id}"
                return answer(request, tx_id, who, 201, location=location, **{"Idempotent-Replayed": "true"})
        written = False
        try:
            tx_id, written = await _new(sender, raw, who, scoped, printed)
        finally:
            if scoped is not None and not written:
                answers.release(scoped)
        return answer(request, tx_id, who, 201, location=f"{base(request)}/transactions/{tx_id}")

    async def _new(sender: str, raw: bytes, who: Principal, scoped: str | None, printed: str) -> tuple[str, bool]:
        """Store the transaction and write it when its blobs are all here; (its id, the key's answer recorded)."""
        parsed = parse_body(raw)
        errors = create_errors(parsed)
        if errors:
            raise invalid(errors)
        try:
            req = CreateTx.model_validate(parsed)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        if not who.admin and who.tenant is not None:
            refused = submitter.policies.sender_refusal(who.tenant, req.mail_from.m)
            if refused is not None:
                raise Problem(
                    403, "Forbidden", f"mail_from.m: {refused}", [{"field": "mail_from.m", "message": refused}]
                )
        now, tx_id = clock(), new_transaction_id()
        store.prune(now - REUSE_WINDOW)
        campaign = req.sender.tag if req.sender else None
        tx = KTx(tx_id, sender, who.key_id, req.mail_from.m, req.rcpt_to[0].m, campaign, None, "awaiting", now, now)
        blobs: list[KBlob] = []
        if req.body is None or req.body.inline is not None:
            data = None if req.body is None or req.body.inline is None else req.body.inline.encode()
            body = KBlob(tx_id, BODY, sender, now)
            if data is not None:
                body.data, body.length, body.total = data, len(data), len(data)
            blobs.append(body)
        elif req.body.reuse_uri is not None:
            source = reused_blob(store, "body.reuse_uri", req.body.reuse_uri, sender, body=True, now=now)
            body = KBlob(tx_id, BODY, sender, now, None, source.length, source.total, source.sha256, source.ref)
            body.summary = source.summary
            blobs.append(body)
        else:
            spec = req.body.message_builder
            assert spec is not None
            tx.spec = spec.model_dump(mode="json", exclude_none=True)
            for n, (blob_id, content) in enumerate(spec.blobs()):
                blob = KBlob(tx_id, blob_id, sender, now)
                if content.inline is not None:
                    blob.data = content.inline.encode()
                    blob.length = blob.total = len(blob.data)
                elif content.reuse_uri is not None:
                    field = f"body.message_builder.parts[{n}].content.reuse_uri"
                    source = reused_blob(store, field, content.reuse_uri, sender, body=False, now=now)
                    blob.data, blob.length, blob.total, blob.sha256 = None, source.length, source.total, source.sha256
                    blob.summary = {"reuse": [source.tx_id, source.blob_id]}
                blobs.append(blob)
        store.create(tx, blobs)
        key_answer = None
        if scoped is not None:
            key_answer = IdempotentAnswer(
                key=scoped, fingerprint=printed, status=201, answer=json.dumps({"transaction": tx_id}), created_at=now
            )
        if all(b.finalized for b in blobs):
            extra = [] if key_answer is None else [(ANSWERS.name, key_answer.key.encode(), ANSWERS.encode(key_answer))]
            await intake.submit(tx, f"<{tx_id}@{config.message_id_domain}>", extra)
        if key_answer is not None:  # written with the records, or (nothing written yet) kept on this replica
            answers.record(key_answer)
        return tx_id, key_answer is not None

    @router.get(
        "/transactions/{tx_id}",
        responses={
            200: {"headers": _ETAG},
            304: {"description": "The ETag in If-None-Match is still the newest", "headers": _ETAG},
            **api.problems((400, "request-timeout is not an integer"), 401, 404, 422, 429),
        },
    )
    async def get(tx_id: str, request: Request) -> Response:
        """Point read; with If-None-Match, waits up to request-timeout (≤30 s) for a change, else 304."""
        who = principal(request)
        etag = etag_of(request.headers.get("if-none-match"))
        try:
            timeout = request_timeout(request.headers.get("request-timeout"), etag is not None)
        except ValueError as exc:
            raise Problem(400, "Bad request-timeout", str(exc)) from None
        body, tag, done = read(request, tx_id, who)
        if etag is not None and etag == tag.strip('"') and not done and timeout > 0:
            with limits.waiter(who):
                await _wait(tx_id, tag, timeout)
            body, tag, done = read(request, tx_id, who)
        if etag is not None and etag == tag.strip('"'):
            return Response(status_code=304, headers={"ETag": tag})  # no body: Koukan's router sends one in error
        return JSONResponse(body, headers={"ETag": tag})

    async def _wait(tx_id: str, tag: str, timeout: float) -> None:
        version = tag.strip('"')
        local: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        changed.setdefault(tx_id, set()).add(local)
        try:
            seen = int(version) if version.isdigit() else -1  # a local tag: any status is newer
            polled = asyncio.ensure_future(view.wait_newer(tx_id, seen, timeout))
            either: set[asyncio.Future[Any]] = {local, polled}
            done, pending = await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                if task is polled:
                    task.result()
        except TooManyWaiters as exc:
            raise too_many(str(exc), timedelta(seconds=1)) from None
        finally:
            waiting = changed.get(tx_id, set())
            waiting.discard(local)
            if not waiting:
                changed.pop(tx_id, None)

    async def _upload(tx_id: str, blob_id: str, request: Request) -> Response:
        who = principal(request)
        tx = local_tx(tx_id, who)
        if tx is None:
            detail = f"no transaction {tx_id!r} awaiting blobs on this replica (upload to the URI it was created with)"
            raise Problem(404, "Not found", detail)
        blob = store.blob(tx_id, blob_id)
        if blob is None:
            raise Problem(404, "Not found", f"transaction {tx_id!r} has no blob {blob_id or 'body'!r} to upload")
        data = await read_body(request, config.max_message_size)
        try:
            chunk = parse_upload(
                request.headers.get("content-range"), request.headers.get(FINALIZE_BLOB_HEADER), len(data)
            )
        except ValueError as exc:
            raise Problem(400, "Bad upload", str(exc)) from None
        if blob.finalized:  # a retried PUT of a complete blob: the same bytes get the same answer
            held = blob.sha256 if blob.data is None else hashlib.sha256(blob.data).hexdigest()
            if chunk.total != blob.total or (chunk.start == 0 and hashlib.sha256(data).hexdigest() != held):
                raise Problem(416, "Range not satisfiable", "the blob is complete", headers=_range(blob))
        elif tx.state != "awaiting":
            raise Problem(409, "Transaction ended", f"the transaction ended: {tx.reason or tx.state}")
        else:
            try:
                blob = store.append(blob, chunk, data, config.max_message_size)
            except UploadRefused as exc:
                title = "Payload too large" if exc.status == 413 else "Range not satisfiable"
                raise Problem(exc.status, title, str(exc), headers=_range(exc.blob)) from None
            notify(tx_id)
        if tx.state == "awaiting" and all(b.finalized for b in store.blobs(tx_id)):
            await intake.submit(tx, f"<{tx_id}@{config.message_id_domain}>")
            notify(tx_id)
        return JSONResponse({}, headers=_range(blob))

    @router.put("/transactions/{tx_id}/body", responses=_UPLOAD, openapi_extra=_BYTES)
    async def put_body(tx_id: str, request: Request) -> Response:
        """The RFC 822 body: whole, or in pieces (content-range, x-finalize-blob-length)."""
        return await _upload(tx_id, BODY, request)

    @router.put("/transactions/{tx_id}/blob/{blob_id}", responses=_UPLOAD, openapi_extra=_BYTES)
    async def put_blob(tx_id: str, blob_id: str, request: Request) -> Response:
        """A message-builder part's content named by its create_id."""
        if not BLOB_ID.fullmatch(blob_id):
            raise _not_found(tx_id)
        return await _upload(tx_id, blob_id, request)

    @router.patch(
        "/transactions/{tx_id}",
        responses={200: {"headers": _ETAG}, **api.problems((400, "A JSON body: not supported"), 401, 404, 413, 422)},
    )
    async def patch(tx_id: str, request: Request) -> Response:
        """An empty body is a heartbeat (blobs still coming); incremental updates are the SMTP gateway's dialect."""
        who = principal(request)
        if await read_body(request, 64 * 1024) or request.headers.get("content-type"):
            raise Problem(400, "Not supported", "this sender does not accept incremental updates: create it whole")
        tx = local_tx(tx_id, who)
        if tx is not None and tx.state == "awaiting":
            store.touch(tx, clock())
        return answer(request, tx_id, who)

    @router.post(
        "/transactions/{tx_id}/cancel",
        responses={
            200: {"description": "Cancelled (or already ended)"},
            307: {"description": "A written transaction: to POST /api/transactions/{id}/cancel"},
            **api.problems(401, 404, 422),
        },
    )
    async def cancel(tx_id: str, request: Request) -> Response:
        """200, empty, as Koukan; a written transaction is cancelled by the audited cancel (307 to it)."""
        who = principal(request)
        tx = local_tx(tx_id, who)
        status = view.get(tx_id)
        if (status is not None and who.may_see(status.tenant)) or (tx is not None and tx.state == "submitted"):
            return RedirectResponse(f"/api/transactions/{tx_id}/cancel", status_code=307)
        if tx is None:
            raise _not_found(tx_id)
        if tx.state == "awaiting" and tx.id not in intake.writing:
            tx.state, tx.reason = "ended", "downstream cancelled"
            store.update(tx, clock())
            notify(tx_id)
        return Response(status_code=200)

    return router


def _range(blob: KBlob) -> dict[str, str]:
    return {"content-range": content_range(blob.length, blob.total)}
