"""The one seam to aiosmtplib: SMTP sessions that carry one message after another; every failure is a reply.

Network and protocol errors are mapped to synthesized replies the way KumoMTA reports them
(`451 4.4.1` for a host that does not answer), so the scheduler sees one shape only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from mailstream.core.smtp_reply import split_enhanced_code
from mailstream.events.records import SmtpResponse
from mailstream.observability.logs import get_logger

log = get_logger(__name__)

StartTls = Literal["opportunistic", "required", "disabled"]


@dataclass(frozen=True, slots=True)
class Destination:
    host: str  # an address once resolved (MX answers are; a relay's name is resolved before connecting)
    port: int
    name: str | None = None  # the host name it was found by: what a relay's certificate must name


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str = dataclasses.field(repr=False)  # in clear (the config's SecretStr unwrapped): never in a repr


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """How to open a session: the egress source's identity and the route's TLS and AUTH."""

    ehlo_domain: str
    source_address: str | None
    starttls: StartTls
    login: Login | None  # sent only after STARTTLS with a verified certificate
    connect_timeout: float
    command_timeout: float
    ca_file: str | None = None  # what a verified certificate is checked against; unset: the system's CAs
    implicit_tls: bool = False  # TLS from the first byte (SMTPS, RFC 8314) instead of STARTTLS


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str  # as the ssl module names it: TLSv1.3
    cipher: str  # OpenSSL's name of the negotiated suite


@dataclass(frozen=True, slots=True)
class SmtpAttempt:
    response: SmtpResponse
    peer_address: str | None
    tls: str | None
    # The connection dropped before the peer took any part of this message (a reused connection the
    # peer had closed while idle): send it again on a new connection, it is not an attempt.
    resend: bool = False
    tls_info: TlsInfo | None = None  # what the session negotiated, when it used TLS


def _negotiated(client: aiosmtplib.SMTP) -> TlsInfo | None:
    secured = client.get_transport_info("ssl_object")
    if secured is None:
        return None
    cipher = secured.cipher()
    return TlsInfo(str(secured.version()), str(cipher[0]) if cipher else "")


def printable(text: str) -> str:
    """A peer's text as valid Unicode: aiosmtplib keeps bytes that are not UTF-8 as lone surrogates, which
    no UTF-8 encoder (so no Avro record) accepts; each becomes U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _reply(code: int, text: str, command: str) -> SmtpResponse:
    enhanced, content = split_enhanced_code(code, printable(text))
    return SmtpResponse(code=code, enhanced_code=enhanced, content=content, command=command)


def _failure(command: str, peer: str, exc: BaseException) -> SmtpResponse:
    what = "timed out" if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError) else printable(str(exc))
    return SmtpResponse(
        code=451, enhanced_code="4.4.1", command=command, content=f"mailstream: {command} to {peer} failed: {what}"
    )


def _verified(s: SessionSettings) -> bool:
    return s.login is not None or s.starttls == "required"


def _tls_context(s: SessionSettings) -> ssl.SSLContext:
    return _context(_verified(s), s.ca_file)


@functools.cache  # loading a CA store takes milliseconds; a context serves any number of connections
def _context(verified: bool, ca_file: str | None) -> ssl.SSLContext:
    if verified:  # credentials, or required TLS, only to the server its certificate proves: system CAs or ca_file
        return ssl.create_default_context(cafile=ca_file)
    # MTA-to-MTA TLS is opportunistic: most MX certificates do not name the MX host (RFC 7435).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _tls_refusal(s: SessionSettings, offered: bool) -> SmtpResponse | None:
    """Why the session must end before STARTTLS: TLS required, or credentials to send, and none offered."""
    if offered:
        return None
    if s.login is not None:  # a stripped STARTTLS must not cost the password: never AUTH in the clear
        return SmtpResponse(
            code=451,
            enhanced_code="4.7.10",
            command="STARTTLS",
            content="mailstream: the relay does not offer STARTTLS; credentials are sent only over verified TLS",
        )
    if s.starttls == "required":
        return SmtpResponse(
            code=451,
            enhanced_code="4.7.5",
            command="STARTTLS",
            content="mailstream: TLS is required but the peer does not offer STARTTLS",
        )
    return None


def _may_fall_back(s: SessionSettings) -> bool:
    return s.starttls == "opportunistic" and s.login is None and not s.implicit_tls


def _unverified(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind `exc` (aiosmtplib wraps it), if that is what it was."""
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _certificate_refusal(
    dest: Destination, s: SessionSettings, exc: ssl.SSLCertVerificationError, command: str
) -> SmtpResponse:
    trusted = s.ca_file or "the system's CA store"
    withheld = "credentials not sent" if s.login is not None else "TLS is required, nothing sent"
    return SmtpResponse(
        code=451,
        enhanced_code="4.7.5",
        command=command,
        content=f"mailstream: certificate of {dest.name or dest.host} not verified against {trusted} "
        f"({printable(exc.verify_message or str(exc))}); {withheld}",
    )


_NETWORK_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


async def _connected(dest: Destination, s: SessionSettings) -> aiosmtplib.SMTP:
    """A client connected (and greeted) to `dest.host`, the address the outbound policy checked. With implicit
    TLS the handshake comes first and is verified against the configured name, so the socket is connected
    here rather than by aiosmtplib, which would check the certificate against the address (or resolve the
    name again, past the policy)."""
    source = (s.source_address, 0) if s.source_address else None
    if not s.implicit_tls:
        client = aiosmtplib.SMTP(
            hostname=dest.host,
            port=dest.port,
            local_hostname=s.ehlo_domain,
            timeout=s.command_timeout,
            source_address=source,
            start_tls=False,
        )
        await client.connect(timeout=s.connect_timeout)
        return client
    family = socket.AF_INET6 if ":" in dest.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            sock.bind(source)
        async with asyncio.timeout(s.connect_timeout):
            await asyncio.get_running_loop().sock_connect(sock, (dest.host, dest.port))
        client = aiosmtplib.SMTP(
            hostname=dest.name or dest.host,  # with `sock`, only what the certificate must name
            sock=sock,
            use_tls=True,
            tls_context=_tls_context(s),
            local_hostname=s.ehlo_domain,
            timeout=s.command_timeout,
        )
        await client.connect(timeout=s.connect_timeout)
    except BaseException:
        sock.close()
        raise
    return client


class SmtpSession:
    """One open, greeted (and maybe TLS-secured and authenticated) SMTP connection."""

    def __init__(self, client: aiosmtplib.SMTP, peer: str, tls: str | None) -> None:
        self._client = client
        self.peer = peer
        self.tls = tls
        self.tls_info = _negotiated(client) if tls is not None else None
        self.deliveries = 0  # messages the peer answered on this connection
        self.usable = True  # False once the connection is in an unknown state: only close it then
        self.command = "MAIL"  # the command of the message being sent

    @classmethod
    async def open(
        cls, hosts: Sequence[Destination], settings: SessionSettings, deadline: float | None = None
    ) -> SmtpSession | SmtpAttempt:
        """Connect to the first host that answers and greets, in order, before `deadline` (the event loop's
        time). A host that fails before any mail is sent (no connection, a 4xx or 5xx greeting or EHLO, TLS
        or AUTH refused) is skipped for the next one (RFC 5321 §5.1, §3.9); when none is left, the most
        relevant failure (`most_relevant`) ends the attempt."""
        failures: list[SmtpAttempt] = []
        for dest in hosts:
            opened = await cls._open_one(dest, settings, deadline)
            if isinstance(opened, SmtpSession):
                return opened
            failures.append(opened)
        return most_relevant(failures)

    @classmethod
    async def _open_one(
        cls, dest: Destination, s: SessionSettings, deadline: float | None
    ) -> SmtpSession | SmtpAttempt:
        peer = f"{dest.host}:{dest.port}"
        command, tls, client = "CONNECT", None, None
        try:
            async with asyncio.timeout_at(deadline):  # its TimeoutError is a network error below
                client = await _connected(dest, s)
                tls = "TLS" if s.implicit_tls else None
                command = "EHLO"
                await client.ehlo()
                if not s.implicit_tls:
                    # Credentials make TLS mandatory whatever `starttls` says.
                    wanted = s.starttls != "disabled" or s.login is not None
                    offered = wanted and client.supports_extension("starttls")
                    refused = _tls_refusal(s, offered)
                    if refused is not None:
                        await _quit(client)
                        return SmtpAttempt(refused, peer, None)
                    if offered:
                        command = "STARTTLS"
                        await client.starttls(server_hostname=dest.name or dest.host, tls_context=_tls_context(s))
                        tls = "TLS"
                if s.login is not None:
                    command = "AUTH"
                    await client.login(s.login.username, s.login.password)
                return cls(client, peer, tls)
        except aiosmtplib.SMTPResponseException as exc:
            if client is not None:
                await _quit(client)
            if command == "STARTTLS" and _may_fall_back(s):  # 454: TLS not available now (RFC 3207)
                return await cls._in_plaintext(dest, s, deadline, exc)
            if command == "AUTH":  # our credentials, not the recipient: retry later, never bounce
                text = f"mailstream: {peer} refused AUTH: {exc.code} {printable(exc.message)}"
                return SmtpAttempt(
                    SmtpResponse(code=451, enhanced_code="4.7.8", command="AUTH", content=text), peer, tls
                )
            return SmtpAttempt(_reply(exc.code, exc.message, command), peer, tls)
        except (*_NETWORK_ERRORS, ValueError) as exc:
            if client is not None:
                client.close()
            unverified = _unverified(exc)
            if unverified is not None:
                return SmtpAttempt(_certificate_refusal(dest, s, unverified, command), peer, None)
            if command == "STARTTLS" and _may_fall_back(s):
                return await cls._in_plaintext(dest, s, deadline, exc)
            return SmtpAttempt(_failure(command, peer, exc), None, None)

    @classmethod
    async def _in_plaintext(
        cls, dest: Destination, s: SessionSettings, deadline: float | None, exc: BaseException
    ) -> SmtpSession | SmtpAttempt:
        """Opportunistic TLS whose handshake failed: once more, on a new connection, without STARTTLS (Postfix's
        `may`); the failed connection is in no state to go on, and sending in the clear is what `opportunistic`
        accepts."""
        log.warning("starttls_failed_plaintext_retry", peer=f"{dest.host}:{dest.port}", error=printable(str(exc)))
        return await cls._open_one(dest, dataclasses.replace(s, starttls="disabled"), deadline)

    async def send(self, sender: str, recipient: str, data: bytes, deadline: float | None = None) -> SmtpAttempt:
        """One message to one recipient, ended `451 4.4.2` (and the connection dropped) if it is not done by
        `deadline` (the event loop's time); after a refusal the transaction is reset for the next message."""
        limit = asyncio.timeout_at(deadline)
        self.command = "MAIL"
        try:
            async with limit:
                return await self._send(sender, recipient, data)
        except TimeoutError:
            if not limit.expired():
                raise
            self.usable = False  # somewhere inside a command: only closing it is safe
            return SmtpAttempt(
                SmtpResponse(
                    code=451,
                    enhanced_code="4.4.2",
                    command=self.command,
                    content=f"mailstream: {self.command} to {self.peer} not answered within the attempt's deadline",
                ),
                self.peer,
                self.tls,
                tls_info=self.tls_info,
            )

    async def _send(self, sender: str, recipient: str, data: bytes) -> SmtpAttempt:
        command = "MAIL"
        try:
            await self._client.mail(sender)
            command = self.command = "RCPT"
            await self._client.rcpt(recipient)
            command = self.command = "DATA"
            reply = await self._client.data(data)
            self.deliveries += 1
            return SmtpAttempt(_reply(reply.code, reply.message, "DATA"), self.peer, self.tls, tls_info=self.tls_info)
        except aiosmtplib.SMTPServerDisconnected as exc:
            self.usable = False
            # Nothing of the message reached a peer that hung up on a reused connection before MAIL.
            resend = command == "MAIL" and self.deliveries > 0
            return SmtpAttempt(_failure(command, self.peer, exc), None, None, resend=resend)
        except aiosmtplib.SMTPResponseException as exc:
            self.deliveries += 1
            if exc.code == 421:  # the peer closes the session (RFC 5321 §3.8)
                self.usable = False
            else:  # a refused MAIL, RCPT or DATA leaves a half-open transaction behind
                await self._reset()
            return SmtpAttempt(_reply(exc.code, exc.message, command), self.peer, self.tls, tls_info=self.tls_info)
        except _NETWORK_ERRORS as exc:
            self.usable = False
            return SmtpAttempt(_failure(command, self.peer, exc), None, None)

    async def _reset(self) -> None:
        try:
            await self._client.rset()
        except _NETWORK_ERRORS:
            self.usable = False

    @property
    def connected(self) -> bool:
        return self.usable and self._client.is_connected

    async def close(self) -> None:
        """QUIT politely when the connection is still sound; else just drop it."""
        if self.connected:
            await _quit(self._client)
        else:
            self._client.close()


def most_relevant(failures: Sequence[SmtpAttempt]) -> SmtpAttempt:
    """The failure that ends an attempt every host failed: a transient one if any host failed transiently
    (another try may find it back, so the message must not bounce), and among those a server's own reply
    over a connection that failed; the last such. `451 4.4.4` when there was no host at all."""
    if not failures:
        response = SmtpResponse(
            code=451, enhanced_code="4.4.4", command="CONNECT", content="mailstream: no host to connect to"
        )
        return SmtpAttempt(response, None, None)
    pool = [f for f in failures if f.response.is_transient] or list(failures)
    return ([f for f in pool if f.peer_address is not None] or pool)[-1]


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except _NETWORK_ERRORS:
        client.close()
