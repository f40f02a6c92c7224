"""Turning generated messages into durable events: body once, then accepted + status + Reception."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from mailstream.core.clock import Clock
from mailstream.core.trace_header import TraceRef, with_header
from mailstream.events.bodies import put_body
from mailstream.events.group_commit import Write
from mailstream.events.producer import EventSink
from mailstream.events.records import AcceptedMessage, BodyRef, LogRecord, SmtpResponse
from mailstream.events.status import reception_status as reception_status  # one v0 for ingest and stage 1
from mailstream.events.topics import ACCEPTED, EVENTS, MESSAGE_LIFETIME, STATUS, route_key
from mailstream.intake.dkim import DkimSigner
from mailstream.intake.routing import Routing, RoutingError, resolve_routing
from mailstream.intake.summary import attachment_count
from mailstream.intake.tenant_policy import TenantPolicies


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One recipient's message, whatever door it came in by (HTTP builder, raw content, SMTP)."""

    recipient: str
    data: bytes
    message_id: str
    headers: dict[str, str]
    metadata: dict[str, object]
    trace_header: str | None = None  # the name of a trace header to add (core.trace_header), None: none
    tx_id: str | None = None  # the transaction's id when the door named it already (Koukan's create), else new
    stored: StoredBody | None = None  # a body already on mail.bodies, reused by reference: not signed nor written


@dataclass(frozen=True, slots=True)
class StoredBody:
    """A body written before (an earlier transaction's), as it was written: the new message refers to it."""

    ref: BodyRef
    attachment_count: int | None


@dataclass(slots=True)
class SubmitResult:
    accepted: list[AcceptedMessage] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (recipient, error)


def new_transaction_id() -> str:
    return uuid.uuid4().hex


def reception_record(msg: AcceptedMessage) -> LogRecord:
    return LogRecord(
        type="Reception",
        id=msg.id,
        sender=msg.sender,
        recipient=msg.recipient,
        queue=msg.queue,
        size=msg.body.size,
        response=SmtpResponse(code=250, enhanced_code="2.0.0", content="accepted"),
        timestamp=msg.received_at,
        created=msg.received_at,
        reception_protocol=msg.reception_protocol,
        tenant=msg.tenant,
        campaign=msg.campaign,
        message_id=msg.message_id,
        meta=msg.metadata,
    )


# (queue, tenant, campaign, recipient domain, now) -> why the queue refuses new messages, or None
Refusal = Callable[[str, str | None, str | None, str, datetime], str | None]
# (tenant, recipient, now) -> why the tenant's suppression list refuses the recipient, or None
Suppressed = Callable[[str | None, str, datetime], str | None]


INLINE_SIGNATURES = 4  # more bodies than this are signed off the event loop (RSA costs ~8 ms each)


class RecordWriter(Protocol):
    async def write(self, records: Sequence[Write], *, timeout: float) -> None:
        """Returns once `records` are durable; KafkaUnavailable otherwise."""
        ...


class DirectWriter:
    """Each record on its own (the gateway's default): not atomic, a failure can leave some records written.
    `group_commit.TransactionalWriter` (and its twin `memory.MemoryTransactions`) writes a set all or nothing."""

    def __init__(self, producer: EventSink) -> None:
        self._producer = producer

    async def write(self, records: Sequence[Write], *, timeout: float) -> None:
        await asyncio.gather(*(self._producer.send_raw(topic, key, value) for topic, key, value in records))


@dataclass(slots=True)
class Prepared:
    """A submission with its bodies written and its records encoded, waiting to be committed."""

    result: SubmitResult
    records: list[Write]


class Submitter:
    def __init__(
        self,
        producer: EventSink,
        clock: Clock,
        refusal: Refusal | None = None,
        signer: DkimSigner | None = None,
        writer: RecordWriter | None = None,
        policies: TenantPolicies | None = None,
        *,
        suppressed: Suppressed | None = None,
    ) -> None:
        self._producer = producer  # bodies: outside any transaction (a body nobody references is harmless)
        self._clock = clock
        self._refusal = refusal  # an early answer for draining and disabled queues; stage 1 has the last word
        self._signer = signer if signer else None
        self._writer = writer or DirectWriter(producer)  # the accepted/status/Reception records
        self._suppressed = suppressed  # the suppression lists (intake.suppression_view)
        self.policies = policies or TenantPolicies()  # tenants' rights: each door asks before it submits

    async def _signed(self, routed: list[tuple[Outgoing, Routing]]) -> list[bytes]:
        """Each message as it will be written: DKIM-signed once per distinct body and tenant."""
        signer = self._signer
        if signer is None:
            return [msg.data for msg, _ in routed]
        fresh = [(msg, route) for msg, route in routed if msg.stored is None]  # a stored body was signed when written
        distinct = {(hashlib.sha256(msg.data).digest(), route.tenant): msg.data for msg, route in fresh}

        def sign_all() -> dict[tuple[bytes, str | None], bytes]:
            return {key: signer.sign(data, key[1]) for key, data in distinct.items()}

        signed = sign_all() if len(distinct) <= INLINE_SIGNATURES else await asyncio.to_thread(sign_all)
        return [
            msg.data if msg.stored is not None else signed[hashlib.sha256(msg.data).digest(), route.tenant]
            for msg, route in routed
        ]

    async def submit(
        self,
        messages: Sequence[Outgoing],
        *,
        sender: str,
        bound_tenant: str | None,
        protocol: Literal["HTTP", "ESMTP"],
    ) -> SubmitResult:
        """Returns once every accepted message is acknowledged by all in-sync replicas."""
        prepared = await self.prepare(messages, sender=sender, bound_tenant=bound_tenant, protocol=protocol)
        await self.commit(prepared)
        return prepared.result

    async def commit(self, prepared: Prepared, extra: Sequence[Write] = (), *, timeout: float = 30.0) -> None:
        """Write the submission's records, with `extra` ones (an idempotency answer), through the writer: with a
        transactional one, all of them or none."""
        records = [*prepared.records, *extra]
        if records:
            await self._writer.write(records, timeout=timeout)

    async def prepare(
        self,
        messages: Sequence[Outgoing],
        *,
        sender: str,
        bound_tenant: str | None,
        protocol: Literal["HTTP", "ESMTP"],
    ) -> Prepared:
        """Route, sign and write the bodies; the records are encoded, not written (`commit`)."""
        result = SubmitResult()
        submission_id = new_transaction_id()
        now = self._clock()
        routed = []
        tx_ids: list[str] = []  # known before the body is built: a trace header names its transaction
        for msg in messages:
            domain = msg.recipient.rpartition("@")[2].lower()
            steering = self.policies.steering_refusals(bound_tenant, msg.metadata) if bound_tenant else []
            if steering:  # the door refuses these first (ingest: 403); this is the backstop
                result.failed.append((msg.recipient, f"metadata.{steering[0][0]}: {steering[0][1]}"))
                continue
            try:
                route = resolve_routing(msg.metadata, domain, bound_tenant=bound_tenant, latest=now + MESSAGE_LIFETIME)
            except RoutingError as exc:
                result.failed.append((msg.recipient, str(exc)))
                continue
            refused = self._suppressed(route.tenant, msg.recipient, now) if self._suppressed else None
            if refused is None and self._refusal is not None:
                refused = self._refusal(route.queue, route.tenant, route.campaign, domain, now)
            if refused is not None:
                result.failed.append((msg.recipient, refused))
                continue
            tx_ids.append(msg.tx_id or new_transaction_id())
            if (
                msg.trace_header is not None and msg.stored is None
            ):  # before signing: the header is signable and in the stored body
                ref = TraceRef(tx_ids[-1], route.tenant, msg.recipient)
                msg = replace(msg, data=with_header(msg.data, msg.trace_header, ref))
            routed.append((msg, route))
        data = await self._signed(routed)
        stored = [msg.stored for msg, _ in routed]
        digests = [s.ref.sha256 if s else hashlib.sha256(d).hexdigest() for s, d in zip(stored, data, strict=True)]
        bodies: dict[str, asyncio.Future[BodyRef]] = {}
        attachments: dict[str, int | None] = {}
        for digest, body, known in zip(digests, data, stored, strict=True):
            if digest in bodies:  # recipients sharing one body share one write
                continue
            if known is not None:
                bodies[digest] = asyncio.get_running_loop().create_future()
                bodies[digest].set_result(known.ref)
                attachments[digest] = known.attachment_count
            else:
                bodies[digest] = asyncio.ensure_future(put_body(self._producer, body))
                attachments[digest] = attachment_count(body)
        await asyncio.gather(*bodies.values())
        records: list[Write] = []  # the request's accepted/status/Reception records: all written, or none
        for (msg, route), digest, tx_id in zip(routed, digests, tx_ids, strict=True):
            try:
                accepted = AcceptedMessage(
                    id=tx_id,
                    submission_id=submission_id,
                    queue=route.queue,
                    tenant=route.tenant,
                    campaign=route.campaign,
                    routing_domain=route.routing_domain,
                    sender=sender,
                    recipient=msg.recipient,
                    domain=msg.recipient.rpartition("@")[2].lower(),
                    message_id=msg.message_id,
                    body=bodies[digest].result(),
                    headers=msg.headers,
                    metadata=route.extra,
                    priority=route.priority,
                    send_at=route.send_at,
                    expires_at=route.expires_at,
                    reception_protocol=protocol,
                    received_at=now,
                    attachment_count=attachments[digest],
                )
                encoded = encoded_records(accepted)
            except ValueError as exc:  # a record the log could never take: its recipient fails, not the request
                result.failed.append((msg.recipient, f"cannot be recorded: {exc}"))
                continue
            result.accepted.append(accepted)
            records.extend(encoded)
        return Prepared(result, records)


# Kafka's record overhead beside key and value (batch and record headers), so a record just under a topic's
# max.message.bytes is not let through to be refused by the broker.
RECORD_OVERHEAD = 512


def encoded_records(accepted: AcceptedMessage) -> list[Write]:
    """The three records of an accepted message, encoded; ValueError when one cannot be encoded or is larger
    than its topic takes (metadata and headers too large), which no retry could change."""
    out: list[Write] = []
    for topic, key, value in (
        (ACCEPTED.name, route_key(accepted.tenant, accepted.queue), ACCEPTED.encode(accepted)),
        (STATUS.name, accepted.id, STATUS.encode(reception_status(accepted))),
        (EVENTS.name, accepted.id, EVENTS.encode(reception_record(accepted))),
    ):
        limit = TOPIC_LIMITS[topic]
        if len(value) + len(key) + RECORD_OVERHEAD > limit:
            raise ValueError(
                f"its metadata and headers make a {topic} record of {len(value)} bytes; the topic "
                f"takes at most {limit - RECORD_OVERHEAD}"
            )
        out.append((topic, key.encode(), value))
    return out


TOPIC_LIMITS = {t.name: t.max_message_bytes for t in (ACCEPTED, STATUS, EVENTS)}
