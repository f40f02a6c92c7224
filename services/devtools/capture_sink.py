"""A capture SMTP sink on aiosmtpd: stores what it receives, answers what it is told to.

Recipients whose local part starts with a configured prefix get a scripted reply, so one
sink can play a good MX, a full mailbox and a rejecting one:
`bounce*@` → 550 5.1.1, `defer*@` → 451 4.3.0 (the defaults of `CaptureSink.scripted`).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import signal
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DEFAULT_SCRIPT = {"bounce": "550 5.1.1 mailbox unknown", "defer": "451 4.3.0 try again later"}


@dataclass(frozen=True, slots=True)
class Captured:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: str
    received_at: float

    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class CaptureHandler:
    script: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SCRIPT))
    maildir: Path | None = None
    messages: list[Captured] = field(default_factory=list)
    arrived: asyncio.Event | None = None

    def _scripted(self, address: str) -> str | None:
        local = address.partition("@")[0].lower()
        for prefix, reply in self.script.items():
            if local.startswith(prefix):
                return reply
        return None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self._scripted(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        captured = Captured(
            envelope.mail_from or "",
            tuple(envelope.rcpt_tos),
            data,
            f"{session.peer[0]}:{session.peer[1]}" if session.peer else "",
            time.time(),
        )
        self.messages.append(captured)
        if self.maildir is not None:
            name = f"{time.time_ns()}.{len(self.messages)}.eml"
            (self.maildir / name).write_bytes(data)
        return f"250 2.0.0 OK captured as {len(self.messages)}"


HOOKS = ("handle_RCPT", "handle_DATA")
assert all(callable(getattr(CaptureHandler, h, None)) for h in HOOKS)  # aiosmtpd finds hooks by name


class CaptureSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **handler_args: Any) -> None:
        self.handler = CaptureHandler(**handler_args)
        self._controller = Controller(
            self.handler, hostname=host, port=port or _free_port(host), ready_timeout=10, decode_data=False
        )

    @property
    def address(self) -> tuple[str, int]:
        return self._controller.hostname, self._controller.port

    @property
    def messages(self) -> list[Captured]:
        return self.handler.messages

    def start(self) -> CaptureSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailstream-capture-sink", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:2525", help="host:port (default 127.0.0.1:2525)")
    parser.add_argument("--maildir", type=Path, help="write each message there as an .eml file")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if args.maildir:
        args.maildir.mkdir(parents=True, exist_ok=True)
    sink = CaptureSink(host, int(port), maildir=args.maildir).start()
    print(f"capture sink listening on {host}:{port}; storing in {args.maildir or 'memory'}", flush=True)
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    asyncio.run(wait())
    sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
