"""The notifier: a stage over mail.events that sends a DSN (RFC 3464) for SMTP-accepted mail that failed.

It runs on the transactional processor, so a notice is sent exactly once across crashes: the Reception of
each message that may owe one is kept as state (changelog mail.gateway.notice-state) until the message
ends. A failure that comes while cut-through may still be answering the client is held: if the gateway
passed that failure to the client itself (a Rejection record), no notice follows. The notice is submitted
through the pipeline like any message, from the null sender, so it can never cause another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from mailstream.events.handler import Writes
from mailstream.events.records import AcceptedMessage, BodyRef, LogRecord
from mailstream.events.status import reception_status
from mailstream.events.topics import ACCEPTED, EVENTS, STATUS, route_key
from mailstream.gateway.dsn import FAILED, Notice, build_notice, owes_notice, told_client
from mailstream.intake.routing import resolve_routing
from mailstream.intake.submission import reception_record
from mailstream.intake.summary import summary_headers
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
ENDED_WITHOUT_NOTICE = ("Delivery", "AdminBounce")  # delivered, or cancelled by someone who knows


def notice_id(transaction_id: str) -> str:
    """The notice's own transaction id, derived so that a replayed failure names the same notice."""
    return hashlib.sha256(f"dsn:{transaction_id}".encode()).hexdigest()[:32]


class Notifier:
    def __init__(self, *, reporting_mta: str, hold: timedelta, write_body: Callable[[bytes], BodyRef]) -> None:
        self._reporting_mta = reporting_mta
        self._hold = hold  # at least the cut-through wait, plus the time to write a Rejection
        self._write_body = write_body  # blocking; a body written twice after an abort is harmless
        self._state: dict[int, dict[bytes, bytes]] = {}
        self.sent = 0

    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None:
        self._state[partition] = dict(state)

    def revoked(self, partition: int) -> None:
        self._state.pop(partition, None)

    def _put(self, out: Writes, partition: int, key: bytes, value: bytes | None) -> None:
        state = self._state[partition]
        if value is None:
            if state.pop(key, None) is not None:
                out.put(partition, key, None)
        else:
            state[key] = value
            out.put(partition, key, value)

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        if not value:
            return
        record = EVENTS.decode(value)
        tx = record.id.encode()
        state = self._state[partition]
        if record.type == "Reception":
            if owes_notice(record):
                self._put(out, partition, b"r:" + tx, value)
        elif record.type in ENDED_WITHOUT_NOTICE or told_client(record):
            self._put(out, partition, b"r:" + tx, None)
            self._put(out, partition, b"f:" + tx, None)
        elif record.type in FAILED and b"r:" + tx in state:
            reception = EVENTS.decode(state[b"r:" + tx])
            if record.timestamp < reception.timestamp + self._hold:
                self._put(out, partition, b"f:" + tx, value)  # cut-through may still tell the client
            else:
                self._notify(partition, reception, record, now, out)

    def on_tick(self, now: datetime, out: Writes) -> None:
        for partition, state in self._state.items():
            due = []
            for key, value in state.items():
                if key.startswith(b"f:"):
                    reception = EVENTS.decode(state[b"r:" + key[2:]])
                    if now >= reception.timestamp + self._hold:
                        due.append((reception, EVENTS.decode(value)))
            for reception, failure in due:
                self._notify(partition, reception, failure, now, out)

    def _notify(self, partition: int, reception: LogRecord, failure: LogRecord, now: datetime, out: Writes) -> None:
        dsn_id = notice_id(reception.id)
        data = build_notice(
            Notice(reception, failure),
            reporting_mta=self._reporting_mta,
            mailer_daemon=f"MAILER-DAEMON@{self._reporting_mta}",
            message_id=f"{dsn_id}@{self._reporting_mta}",
            now=now,
        )
        domain = reception.sender.rpartition("@")[2].lower()
        route = resolve_routing({}, domain, bound_tenant=reception.tenant)  # the notice is the tenant's mail too
        notice = AcceptedMessage(
            id=dsn_id,
            submission_id=dsn_id,
            queue=route.queue,
            tenant=route.tenant,
            campaign=route.campaign,
            sender="",
            recipient=reception.sender,
            domain=domain,
            message_id=f"{dsn_id}@{self._reporting_mta}",
            body=self._write_body(data),
            headers=summary_headers(data),
            metadata={"dsn_for": reception.id},
            reception_protocol="ESMTP",
            received_at=now,
        )
        out.send(ACCEPTED.name, route_key(notice.tenant, notice.queue).encode(), ACCEPTED.encode(notice))
        out.send(STATUS.name, notice.id.encode(), STATUS.encode(reception_status(notice)))
        out.send(EVENTS.name, notice.id.encode(), EVENTS.encode(reception_record(notice)))
        self._put(out, partition, b"r:" + reception.id.encode(), None)
        self._put(out, partition, b"f:" + reception.id.encode(), None)
        self.sent += 1
        log.info("notice_sent", transaction=reception.id, notice=dsn_id, to=reception.sender, failure=failure.type)
