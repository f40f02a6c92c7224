"""An aiosmtpd sink that records every connection: when it opened and closed, from which address,
with which EHLO name, TLS and login, and the messages it carried. Tests read connection counts,
concurrency and spacing from it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    ehlo: str | None
    tls: bool
    login: str | None
    at: float = field(default_factory=time.monotonic)  # when it was accepted


@dataclass
class Connection:
    peer: str  # the client's address, without the port
    opened: float  # time.monotonic()
    closed: float | None = None
    messages: list[Received] = field(default_factory=list)
    auth_lines: list[str] = field(default_factory=list)  # each AUTH command the client sent, as it arrived


class _RecordingSMTP(SMTP):
    def __init__(self, sink: RecordingSink, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink
        self.record: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrade = self._original_transport is not None  # STARTTLS calls this again on the TLS transport
        super().connection_made(transport)
        if not upgrade:
            self.record = self._sink.opened(transport.get_extra_info("peername")[0])

    async def smtp_AUTH(self, arg: str) -> None:
        if self.record is not None:
            self.record.auth_lines.append(f"AUTH {arg}")
        await super().smtp_AUTH(arg)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if self.record is not None:
            self._sink.closed(self.record)


class _Handler:
    def __init__(self, sink: RecordingSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.delay:
            await asyncio.sleep(self._sink.delay)
        assert isinstance(server, _RecordingSMTP)
        assert server.record is not None
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        server.record.messages.append(
            Received(
                envelope.mail_from or "",
                tuple(envelope.rcpt_tos),
                envelope.original_content or b"",
                session.host_name,
                session.ssl is not None,
                login,
            )
        )
        return "250 2.0.0 OK"


class _Controller(Controller):
    def __init__(self, sink: RecordingSink, **kwargs: Any) -> None:
        super().__init__(_Handler(sink), **kwargs)
        self._sink = sink

    def factory(self) -> SMTP:
        return _RecordingSMTP(self._sink, self.handler, **self.SMTP_kwargs)


class RecordingSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        port: int = 0,
        delay: float = 0.0,
        tls: tuple[Path, Path] | None = None,
        logins: dict[str, str] | None = None,
        implicit_tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: (certificate, key) to offer STARTTLS, or with `implicit_tls` to speak TLS from the first byte
        (SMTPS); `tls_context`: a server context of the test's own instead (a handshake that must fail, say);
        `logins`: accepted AUTH user → password (AUTH then required)."""
        self.delay = delay
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._recording = False  # the controller's own readiness probe is not a client
        kwargs: dict[str, Any] = {}
        if tls is not None or tls_context is not None:
            context = tls_context or ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            if tls is not None:
                context.load_cert_chain(*tls)
            kwargs["ssl_context" if implicit_tls else "tls_context"] = context
        if logins is not None:

            def authenticate(
                server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
            ) -> AuthResult:
                ok = isinstance(data, LoginPassword) and logins.get(data.login.decode()) == data.password.decode()
                return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

            # aiosmtpd counts only STARTTLS as TLS for auth_require_tls: over implicit TLS it must be off.
            require_tls = tls is not None and not implicit_tls
            kwargs |= {"authenticator": authenticate, "auth_required": True, "auth_require_tls": require_tls}
        self._controller = _Controller(
            self, hostname=host, port=port or _free_port(host), ready_timeout=10, server_hostname="sink.test", **kwargs
        )

    @property
    def address(self) -> tuple[str, int]:
        return self._controller.hostname, self._controller.port

    @property
    def hostport(self) -> str:
        host, port = self.address
        return f"{host}:{port}"

    def opened(self, peer: str) -> Connection:
        record = Connection(peer, time.monotonic())
        if self._recording:
            with self._lock:
                self.connections.append(record)
        return record

    def closed(self, record: Connection) -> None:
        record.closed = time.monotonic()

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return [m for c in self.connections for m in c.messages]

    def max_concurrent(self) -> int:
        """The most connections that were open at the same instant."""
        events = sorted(
            [(c.opened, 1) for c in self.connections]
            + [(c.closed if c.closed is not None else float("inf"), -1) for c in self.connections],
            key=lambda e: (e[0], e[1]),
        )  # a close sorts before an open at the same instant
        most = now = 0
        for _, step in events:
            now += step
            most = max(most, now)
        return most

    def __enter__(self) -> RecordingSink:
        self._controller.start()
        self._recording = True
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._controller.stop()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def self_signed(workdir: Path, name: str = "relay.test") -> tuple[Path, Path]:
    """A throwaway certificate and key (openssl, which Postfix's package brings along)."""
    cert, key = workdir / f"{name}.crt", workdir / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
