"""aiosmtpd's SMTP protocol, made strict where an MTA facing the internet has to be.

What it adds: an enhanced status code on every reply that takes one, DSN parameters (RFC 3461) on MAIL
and RCPT, connection limits per listener and per client address, AUTH checked off the event loop with
failures delayed and bounded per client, a 421 before an idle session is closed, and a drain for
graceful shutdown. The commands themselves are aiosmtpd's; policy lives in `session.GatewayHandler`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections import Counter
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from prometheus_client import Counter as Metric
from prometheus_client import Gauge

from mailstream.config.gateway import Listener
from mailstream.core.line_length import MAX_LINE_OCTETS
from mailstream.gateway.auth import Credentials, FailureLimiter
from mailstream.gateway.replies import with_enhanced

SESSIONS = Metric("mailstream_gateway_sessions_total", "SMTP sessions by listener and outcome", ["listener", "outcome"])
OPEN_SESSIONS = Gauge("mailstream_gateway_open_sessions", "SMTP sessions open", ["listener"])
REPLIES = Metric("mailstream_gateway_replies_total", "SMTP replies by listener and code", ["listener", "code"])
TLS_HANDSHAKES = Metric(
    "mailstream_gateway_tls_handshakes_total", "STARTTLS and implicit TLS handshakes", ["listener", "outcome"]
)
AUTH_FAILURES = Metric("mailstream_gateway_auth_failures_total", "Failed AUTH attempts", ["listener"])
COMMANDS = Metric("mailstream_gateway_commands_total", "SMTP commands by listener", ["listener", "command"])

_XTEXT = re.compile(r"^(?:[!-*,-<>-~]|\+[0-9A-F]{2})+$")  # RFC 3461 section 4: printable ASCII, '+XX' escapes
_NOTIFY = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}


class GatewaySession(Session):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.id = uuid.uuid4().hex[:16]
        self.user: Any = None  # the SmtpUser once AUTH succeeded
        self.client = ""


class GatewayEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.dsn_ret: str | None = None  # FULL or HDRS
        self.dsn_envid: str | None = None
        self.rcpt_dsn: list[tuple[str | None, str | None]] = []  # (NOTIFY, ORCPT) per accepted recipient
        self.destinations: list[Any] = []  # policy.Destination per accepted recipient


class DsnParamError(ValueError):
    pass


def take_dsn_params(arg: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """`arg` without its DSN parameters, and those parameters (names upper-cased, values as sent)."""
    kept, found = [], {}
    head, sep, params = arg.partition(">")
    for token in params.split():
        name, eq, value = token.partition("=")
        if name.upper() in names:
            if not eq or not value or name.upper() in found:
                raise DsnParamError(f"bad {name.upper()} parameter")
            found[name.upper()] = value
        else:
            kept.append(token)
    return head + sep + (" " + " ".join(kept) if kept else ""), found


def check_mail_dsn(found: dict[str, str]) -> tuple[str | None, str | None]:
    ret = found.get("RET")
    if ret is not None and ret.upper() not in ("FULL", "HDRS"):
        raise DsnParamError("RET must be FULL or HDRS")
    envid = found.get("ENVID")
    if envid is not None and (len(envid) > 100 or not _XTEXT.match(envid)):
        raise DsnParamError("ENVID must be xtext of at most 100 characters")
    return (ret.upper() if ret else None), envid


def check_rcpt_dsn(found: dict[str, str]) -> tuple[str | None, str | None]:
    notify = found.get("NOTIFY")
    if notify is not None:
        values = notify.upper().split(",")
        if not set(values) <= _NOTIFY or ("NEVER" in values and len(values) > 1) or len(set(values)) < len(values):
            raise DsnParamError("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
        notify = ",".join(values)
    orcpt = found.get("ORCPT")
    if orcpt is not None and (len(orcpt) > 500 or ";" not in orcpt or not _XTEXT.match(orcpt.partition(";")[2])):
        raise DsnParamError("ORCPT must be addr-type;xtext")
    return notify, orcpt


class ConnectionLimits:
    """Sessions open on one listener, in total and per client address."""

    def __init__(self, listener: Listener) -> None:
        self.total, self.per_client = listener.max_connections, listener.max_connections_per_client
        self.open: set[GatewaySMTP] = set()
        self.by_client: Counter[str] = Counter()
        self.draining = False

    def admit(self, protocol: GatewaySMTP, client: str) -> str | None:
        if self.draining:
            return "421 4.3.2 shutting down, try again later"
        if len(self.open) >= self.total:
            return "421 4.7.0 too many connections, try again later"
        if self.by_client[client] >= self.per_client:
            return "421 4.7.0 too many connections from your address, try again later"
        self.open.add(protocol)
        self.by_client[client] += 1
        return None

    def release(self, protocol: GatewaySMTP, client: str) -> None:
        if protocol in self.open:
            self.open.discard(protocol)
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]


class GatewaySMTP(SMTP):
    # A DATA line of 998 octets and its CRLF (RFC 5321 §4.5.3.1.6, core.line_length); aiosmtpd's 1001 let a line of
    # 999 through, for the next server to bounce. A longer one is answered 500 5.5.2 at the end of the data.
    line_length_limit = MAX_LINE_OCTETS + 2

    def __init__(
        self,
        handler: Any,
        *,
        listener: Listener,
        hostname: str,
        limits: ConnectionLimits,
        credentials: Credentials,
        failures: FailureLimiter,
        failure_delay: float,
        starttls: ssl.SSLContext | None,
    ) -> None:
        implicit = listener.tls.mode == "implicit"
        super().__init__(
            handler,
            data_size_limit=listener.max_message_size,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="ESMTP mailstream",
            tls_context=starttls,
            require_starttls=listener.tls.mode == "starttls_required",
            timeout=listener.idle_timeout.total_seconds(),
            # AUTH is offered only once the session is encrypted; an implicit-TLS session is from its first byte.
            auth_require_tls=not (implicit or listener.allow_auth_without_tls),
            authenticator=self._take_credentials,
            proxy_protocol_timeout=10.0 if listener.proxy_protocol else None,
            loop=asyncio.get_running_loop(),
        )
        self.listener = listener
        self._limits = limits
        self._credentials = credentials
        self._failures = failures
        self._failure_delay = failure_delay
        self._presented: LoginPassword | None = None
        self._greeting_reply = False  # replies to EHLO/HELO carry no enhanced code (RFC 2034)
        self._refused = False
        self._drained = False
        self._client = "unknown"
        self.session: GatewaySession | None

    def _create_session(self) -> GatewaySession:
        return GatewaySession(self.loop)

    def _create_envelope(self) -> GatewayEnvelope:
        return GatewayEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # a new connection, not the TLS layer STARTTLS puts under it
            peer = transport.get_extra_info("peername")
            client = self._client = str(peer[0]) if peer else "unknown"
            refused = self._limits.admit(self, client)
            if refused is not None:
                self._refused = True
                SESSIONS.labels(self.listener.name, "refused").inc()
                transport.write(refused.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            OPEN_SESSIONS.labels(self.listener.name).inc()
            SESSIONS.labels(self.listener.name, "opened").inc()
            super().connection_made(transport)
            assert self.session is not None
            self.session.client = client
            if transport.get_extra_info("ssl_object") is not None:
                TLS_HANDSHAKES.labels(self.listener.name, "implicit").inc()
            return
        # STARTTLS: aiosmtpd starts a new session, forgetting what was said before (RFC 3207 4.2); the client
        # address and the session id for the logs stay.
        before = self.session
        super().connection_made(transport)
        assert self.session is not None
        assert before is not None
        self.session.client, self.session.id = before.client, before.id
        TLS_HANDSHAKES.labels(self.listener.name, "starttls").inc()

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self in self._limits.open:
            self._limits.release(self, self._client)
            OPEN_SESSIONS.labels(self.listener.name).dec()
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        if self.transport is not None:
            self.transport.write(b"421 4.4.2 idle too long, closing connection\r\n")  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def push(self, status: str | bytes) -> None:
        line = status.encode("utf-8") if isinstance(status, str) else status
        if not self._greeting_reply:
            line = with_enhanced(line)
        code = line[:3].decode("ascii", "replace")
        if line[3:4] != b"-":  # a multi-line reply counts once
            REPLIES.labels(self.listener.name, code).inc()
        if code == "535":
            self._failures.failed(self._client)
            AUTH_FAILURES.labels(self.listener.name).inc()
            await asyncio.sleep(self._failure_delay)  # guessing is slow, and says nothing by its timing
        await super().push(line)

    async def _handle_greeting(self, command: str, hostname: str) -> None:
        COMMANDS.labels(self.listener.name, command).inc()
        self._greeting_reply = True
        try:
            await (super().smtp_EHLO(hostname) if command == "EHLO" else super().smtp_HELO(hostname))
        finally:
            self._greeting_reply = False

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._handle_greeting("EHLO", hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        await self._handle_greeting("HELO", hostname)

    async def smtp_MAIL(self, arg: str | None) -> None:
        COMMANDS.labels(self.listener.name, "MAIL").inc()
        try:
            arg, found = take_dsn_params(arg or "", ("RET", "ENVID")) if arg else (arg, {})
            ret, envid = check_mail_dsn(found)
        except DsnParamError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        await super().smtp_MAIL(arg)
        envelope = self.envelope
        if isinstance(envelope, GatewayEnvelope) and envelope.mail_from is not None:
            envelope.dsn_ret, envelope.dsn_envid = ret, envid

    async def smtp_RCPT(self, arg: str | None) -> None:
        COMMANDS.labels(self.listener.name, "RCPT").inc()
        try:
            arg, found = take_dsn_params(arg or "", ("NOTIFY", "ORCPT")) if arg else (arg, {})
            dsn = check_rcpt_dsn(found)
        except DsnParamError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        envelope = self.envelope
        assert isinstance(envelope, GatewayEnvelope)
        accepted = len(envelope.rcpt_tos)
        await super().smtp_RCPT(arg)
        if len(envelope.rcpt_tos) > accepted:
            envelope.rcpt_dsn.append(dsn)

    async def smtp_DATA(self, arg: str) -> None:
        COMMANDS.labels(self.listener.name, "DATA").inc()
        await super().smtp_DATA(arg)

    def _take_credentials(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls its authenticator synchronously; the scrypt check must not hold the event loop,
        # so the credentials are only taken here and checked by smtp_AUTH below, in a thread.
        self._presented = auth_data if isinstance(auth_data, LoginPassword) else None
        return AuthResult(success=False, handled=True)

    async def smtp_AUTH(self, arg: str) -> None:
        COMMANDS.labels(self.listener.name, "AUTH").inc()
        session = self.session
        assert session is not None
        if self._failures.blocked(self._client):
            await self.push("454 4.7.0 too many failed authentication attempts, try again later")
            return
        self._presented = None
        await super().smtp_AUTH(arg)
        presented, self._presented = self._presented, None
        if presented is None:
            return  # aiosmtpd has answered: AUTH not offered yet, bad syntax, aborted
        login = presented.login.decode("utf-8", "surrogateescape")
        password = presented.password.decode("utf-8", "surrogateescape")
        user = await asyncio.to_thread(self._credentials.check, login, password)
        if user is None:
            await self.push("535 5.7.8 authentication credentials invalid")
            return
        session.authenticated = True
        session.user = user
        await self.push("235 2.7.0 authentication successful")

    def proxied(self, client: str) -> bool:
        """The PROXY header named the real client: account the session to it instead of the load balancer."""
        self._limits.release(self, self._client)
        if self._limits.admit(self, client) is not None:
            SESSIONS.labels(self.listener.name, "refused").inc()
            OPEN_SESSIONS.labels(self.listener.name).dec()  # connection_lost counts only admitted sessions
            return False
        self._client = client
        assert self.session is not None
        self.session.client = client
        return True

    @property
    def draining(self) -> bool:
        return self._limits.draining

    def drain(self) -> None:
        """Shutting down: an idle session is told so and closed; one inside a transaction finishes it."""
        envelope = self.envelope
        if not self._drained and self.transport is not None and (envelope is None or envelope.mail_from is None):
            self._drained = True
            self.transport.write(b"421 4.3.2 shutting down, try again later\r\n")  # type: ignore[attr-defined]
            self.transport.close()
