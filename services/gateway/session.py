"""The gateway's aiosmtpd handler: envelope policy at MAIL and RCPT, then DATA handed to the submission
path the HTTP API uses — one transaction per recipient, one body — and answered after cut-through."""

from __future__ import annotations

import email.utils
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiosmtpd.proxy_protocol import ProxyData
from prometheus_client import Counter

from mailstream.config.gateway import GatewayConfig, Listener
from mailstream.core.clock import Clock
from mailstream.core.disposition_class import classify_disposition
from mailstream.events.kafka import KafkaUnavailable
from mailstream.events.producer import EventSink
from mailstream.events.records import AcceptedMessage, LogRecord, QueueCommand, SmtpResponse
from mailstream.events.topics import EVENTS, QUEUE_COMMANDS, route_key
from mailstream.gateway.attempts import AttemptWatch
from mailstream.gateway.cut_through import FirstAttempt, Then, decide
from mailstream.gateway.dsn import TOLD
from mailstream.gateway.policy import Destination, Refused, RelayPolicy, address_domain, check_sender
from mailstream.gateway.protocol import GatewayEnvelope, GatewaySession, GatewaySMTP
from mailstream.gateway.replies import reply
from mailstream.gateway.reports import ReportDestination, receive
from mailstream.intake.capacity_view import CapacityView
from mailstream.intake.routing import RoutingError, resolve_routing
from mailstream.intake.submission import Outgoing, Submitter
from mailstream.intake.summary import message_id_of, summary_headers
from mailstream.intake.suppression_view import SuppressionsLoading, SuppressionView
from mailstream.intake.tenant_policy import header_addresses
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
CUT_THROUGH = Counter(
    "mailstream_gateway_cut_through_total", "DATA replies by how cut-through ended", ["listener", "outcome"]
)
MESSAGES = Counter("mailstream_gateway_messages_total", "Messages by listener and result", ["listener", "result"])


@dataclass(frozen=True, slots=True)
class GatewayParts:
    config: GatewayConfig
    submitter: Submitter
    producer: EventSink
    capacity: CapacityView | None
    watch: AttemptWatch | None
    clock: Clock
    suppressions: SuppressionView | None = None


def rejection_record(message: AcceptedMessage, attempt: FirstAttempt, now: datetime) -> LogRecord:
    """The client was given this permanent failure as the DATA reply (KumoMTA's Rejection), classified as stage 1
    classifies the attempt's bounce."""
    verdict = classify_disposition("bounce", attempt.code, attempt.enhanced, attempt.text)
    return LogRecord(
        type="Rejection",
        id=message.id,
        sender=message.sender,
        recipient=message.recipient,
        queue=message.queue,
        size=message.body.size,
        timestamp=now,
        created=message.received_at,
        response=SmtpResponse(code=attempt.code, enhanced_code=attempt.enhanced, content=attempt.text),
        bounce_classification=verdict.bounce_class,
        bounce_type=verdict.bounce_type,
        reception_protocol="ESMTP",
        tenant=message.tenant,
        campaign=message.campaign,
        message_id=message.message_id,
        meta={TOLD: "DATA reply"},
    )


def _bad_line_endings(data: bytes) -> bool:
    rest = data.replace(b"\r\n", b"")
    return b"\r" in rest or b"\n" in rest


class GatewayHandler:
    def __init__(self, listener: Listener, parts: GatewayParts) -> None:
        self._listener = listener
        self._parts = parts
        self._relay = RelayPolicy(parts.config.ingress_domains)
        self._bounce_domains = {d.domain: d for d in parts.config.bounce_domains}

    async def handle_PROXY(
        self, server: GatewaySMTP, session: GatewaySession, envelope: GatewayEnvelope, proxy_data: ProxyData
    ) -> bool:
        """False closes the connection: a malformed header, or the real client over its connection limit."""
        if not proxy_data.valid or proxy_data.src_addr is None:
            log.warning("bad_proxy_header", session=session.id, error=proxy_data.error)
            return False
        return server.proxied(str(proxy_data.src_addr))

    async def handle_EHLO(
        self,
        server: GatewaySMTP,
        session: GatewaySession,
        envelope: GatewayEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        keep = [r for r in responses if r != "250 HELP"]
        return [*keep, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-DSN", "250 HELP"]

    async def handle_MAIL(
        self,
        server: GatewaySMTP,
        session: GatewaySession,
        envelope: GatewayEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if server.draining:
            return "421 4.3.2 shutting down, try again later"
        if self._listener.mode == "submission":
            if not session.authenticated or session.user is None:
                return reply(530, "5.7.0", "authentication required")
            try:
                check_sender(
                    session.user,
                    "" if address == "<>" else address,
                    smtputf8=envelope.smtp_utf8,
                    policies=self._parts.submitter.policies,
                )
            except Refused as refused:
                return refused.reply
        elif address != "<>":
            try:
                address_domain(address, smtputf8=envelope.smtp_utf8)
            except Refused as refused:
                return refused.reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply(250, "2.1.0", "sender ok")

    def _destination(self, session: GatewaySession, envelope: GatewayEnvelope, address: str) -> Destination:
        if self._listener.mode == "submission":
            return RelayPolicy.submission(session.user, address, smtputf8=envelope.smtp_utf8)
        return self._relay.ingress(address, smtputf8=envelope.smtp_utf8)

    async def handle_RCPT(
        self,
        server: GatewaySMTP,
        session: GatewaySession,
        envelope: GatewayEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._listener.max_recipients:
            return reply(452, "4.5.3", f"too many recipients (at most {self._listener.max_recipients})")
        try:
            report_to = self._report_destination(envelope, address)
            if report_to is not None:  # a bounce or complaint: no routing, list or capacity applies
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(rcpt_options)
                envelope.destinations.append(report_to)
                return reply(250, "2.1.5", "recipient ok")
            destination = self._destination(session, envelope, address)
            domain = address.rpartition("@")[2].lower()
            route = resolve_routing(destination.metadata, domain, bound_tenant=destination.tenant)
        except Refused as refused:
            return refused.reply
        except RoutingError as exc:
            return reply(550, "5.7.1", str(exc))
        suppressed = self._suppressed(route.tenant, address)
        if suppressed is not None:
            return suppressed
        capacity = self._parts.capacity
        refused_by = (
            capacity.refusal(route.queue, route.tenant, route.campaign, domain, self._parts.clock())
            if capacity is not None
            else None
        )
        if refused_by is not None:
            return reply(550, "5.7.1", refused_by)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.destinations.append(destination)
        return reply(250, "2.1.5", "recipient ok")

    def _report_destination(self, envelope: GatewayEnvelope, address: str) -> ReportDestination | None:
        if self._listener.mode != "ingress" or not self._bounce_domains:
            return None
        domain = address_domain(address, smtputf8=envelope.smtp_utf8)
        found = self._bounce_domains.get(domain)
        return ReportDestination(found.domain, found.tenant) if found is not None else None

    async def _reports(self, session: GatewaySession, envelope: GatewayEnvelope, content: bytes) -> str | None:
        """Hand the reports among the recipients to stage 1 and take their recipients off the envelope; the
        reply when nothing else is left (250 for any report: never bounce a bounce)."""
        at = [i for i, d in enumerate(envelope.destinations) if isinstance(d, ReportDestination)]
        if not at:
            return None
        try:
            await receive(
                self._parts.producer,
                content,
                [envelope.rcpt_tos[i] for i in at],
                [envelope.destinations[i] for i in at],
                peer=session.client or "unknown",
                header_name=self._parts.config.trace_header,
                now=self._parts.clock(),
                session=session.id,
            )
        except KafkaUnavailable as exc:
            log.warning("event_log_unavailable", session=session.id, error=str(exc))
            return reply(451, "4.3.0", "the message store is not accepting mail, try again later")
        MESSAGES.labels(self._listener.name, "report").inc()
        if len(at) == len(envelope.rcpt_tos):
            return reply(250, "2.0.0", "report received")
        keep = [i for i in range(len(envelope.rcpt_tos)) if i not in at]
        envelope.rcpt_tos = [envelope.rcpt_tos[i] for i in keep]
        envelope.destinations = [envelope.destinations[i] for i in keep]
        envelope.rcpt_dsn = [envelope.rcpt_dsn[i] for i in keep]
        return None

    def _suppressed(self, tenant: str | None, address: str) -> str | None:
        """The reply refusing a recipient on the tenant's suppression list (or 451 while the list loads)."""
        view = self._parts.suppressions
        try:
            why = view.refusal(tenant, address, self._parts.clock()) if view is not None else None
        except SuppressionsLoading:
            return reply(451, "4.3.0", "the suppression list is still loading, try again later")
        return None if why is None else reply(550, "5.1.1", why)

    def _message(self, session: GatewaySession, envelope: GatewayEnvelope, content: bytes) -> bytes:
        """The message as it goes on: a Received trace field first (RFC 5321 4.4), and on submission the
        Message-ID and Date a client may leave to its submission server (RFC 6409 8)."""
        config = self._parts.config
        now = self._parts.clock()
        with_ = ("ESMTPS" if session.ssl is not None or self._listener.tls.mode == "implicit" else "ESMTP") + (
            "A" if session.authenticated else ""
        )
        peer = session.client or "unknown"
        helo = (session.host_name or "unknown").replace("\r", "").replace("\n", "")[:255]
        trace = (
            f"Received: from {helo} ([{peer}])\r\n\tby {config.hostname} (mailstream) with {with_}\r\n"
            f"\tid {session.id}; {email.utils.format_datetime(now)}\r\n"
        ).encode("utf-8", "replace")
        added = b""
        if self._listener.mode == "submission":
            head = content.split(b"\r\n\r\n", 1)[0].lower()
            names = {line.split(b":", 1)[0].strip() for line in head.split(b"\r\n") if b":" in line}
            if b"message-id" not in names:
                added += f"Message-ID: <{uuid.uuid4().hex}@{config.message_id_domain}>\r\n".encode()
            if b"date" not in names:
                added += f"Date: {email.utils.format_datetime(now)}\r\n".encode()
        return trace + added + content

    async def handle_DATA(self, server: GatewaySMTP, session: GatewaySession, envelope: GatewayEnvelope) -> str:
        content = envelope.original_content or b""
        answered = await self._reports(session, envelope, content)
        if answered is not None:
            return answered
        if _bad_line_endings(content):
            MESSAGES.labels(self._listener.name, "refused").inc()
            return reply(554, "5.6.0", "bare CR or LF in the message: lines must end with CRLF (RFC 5321 2.3.8)")
        head = content.split(b"\r\n\r\n", 1)[0]
        if not envelope.smtp_utf8 and not head.isascii():
            MESSAGES.labels(self._listener.name, "refused").inc()
            return reply(554, "5.6.7", "non-ASCII header fields need SMTPUTF8 (RFC 6532)")
        data = self._message(session, envelope, content)
        summary = summary_headers(data)
        refused = self._from_refused(session, summary.get("From"), smtputf8=envelope.smtp_utf8)
        if refused is not None:
            MESSAGES.labels(self._listener.name, "refused").inc()
            return refused
        message_id = message_id_of(summary)
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        config = self._parts.config
        trace = config.trace_header if config.trace_submitted and self._listener.mode == "submission" else None
        outgoing = []
        for rcpt, destination, (notify, orcpt) in zip(
            envelope.rcpt_tos, envelope.destinations, envelope.rcpt_dsn, strict=True
        ):
            meta: dict[str, Any] = {**destination.metadata, "tenant": destination.tenant}
            dsn = {
                "dsn_notify": notify,
                "dsn_orcpt": orcpt,
                "dsn_ret": envelope.dsn_ret,
                "dsn_envid": envelope.dsn_envid,
            }
            meta.update({k: v for k, v in dsn.items() if v})
            outgoing.append(Outgoing(rcpt, data, message_id, summary, meta, trace))
        try:
            result = await self._parts.submitter.submit(outgoing, sender=sender, bound_tenant=None, protocol="ESMTP")
        except KafkaUnavailable as exc:
            MESSAGES.labels(self._listener.name, "unavailable").inc()
            log.warning("event_log_unavailable", session=session.id, error=str(exc))
            return reply(451, "4.3.0", "the message store is not accepting mail, try again later")
        if not result.accepted:
            MESSAGES.labels(self._listener.name, "refused").inc()
            return reply(554, "5.7.1", result.failed[0][1] if result.failed else "no recipient accepted")
        MESSAGES.labels(self._listener.name, "accepted").inc()
        answer = await self._cut_through(result.accepted)
        log.info(
            "message",
            session=session.id,
            listener=self._listener.name,
            sender=sender,
            recipients=len(result.accepted),
            refused=len(result.failed),
            reply=answer,
            transactions=[m.id for m in result.accepted],
        )
        return answer

    def _from_refused(self, session: GatewaySession, from_header: str | None, *, smtputf8: bool) -> str | None:
        """On submission, the From addresses are held to the sender domains as MAIL FROM is."""
        if self._listener.mode != "submission" or session.user is None:
            return None
        try:
            for address in header_addresses(from_header or ""):
                check_sender(session.user, address, smtputf8=smtputf8, policies=self._parts.submitter.policies)
        except Refused as refused:
            return refused.reply
        return None

    async def _cut_through(self, accepted: list[AcceptedMessage]) -> str:
        parts = self._parts
        ids = [m.id for m in accepted]
        wait = parts.config.cut_through_wait.total_seconds()
        now = parts.clock()
        named = f" as {ids[0]}" + (f" and {len(ids) - 1} more" if len(ids) > 1 else "")  # like Postfix's queue id
        held = any(m.send_at is not None and m.send_at > now for m in accepted)
        if parts.watch is None or wait <= 0 or held:
            CUT_THROUGH.labels(self._listener.name, "skipped").inc()
            return reply(250, "2.0.0", "queued" + named)
        attempts: list[FirstAttempt | None] = await parts.watch.wait(ids, wait)
        verdict = decide(self._listener.mode, attempts)
        CUT_THROUGH.labels(self._listener.name, "timeout" if None in attempts else "answered").inc()
        for message, attempt, then in zip(accepted, attempts, verdict.then, strict=True):
            if then is Then.TOLD and attempt is not None:  # the client knows: the notifier sends no DSN
                await parts.producer.send(EVENTS, message.id, rejection_record(message, attempt, now))
            if then is Then.CANCEL:  # on behalf of the message's tenant, whose mail it is (stage 1 checks)
                await parts.producer.send(
                    QUEUE_COMMANDS,
                    route_key(message.tenant, message.queue),
                    QueueCommand(
                        id=uuid.uuid4().hex,
                        action="cancel",
                        queue=message.queue,
                        tenant=message.tenant,
                        reason="the sending MTA was told to retry",
                        issued_at=now,
                        issued_by=f"tenant:{message.tenant}",
                        transaction_id=message.id,
                    ),
                )
        return verdict.reply + named if verdict.reply.startswith("2") else verdict.reply
