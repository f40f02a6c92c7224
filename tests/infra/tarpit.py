"""A tarpit: an SMTP server on loopback that waits `delay` seconds before every reply (the greeting, EHLO,
MAIL, RCPT, DATA, the end of the data, RSET, QUIT), and accepts every message in the end.

`slow` narrows the wait to some steps (named as in `STEPS`; the others answer at once), and `final_reply`
is the raw line that ends each message (a bad peer's bytes, say one that is not UTF-8).

It runs its own event loop on a thread, so the client under test shares nothing with it. It records
when each connection opened and when each message was accepted (`time.monotonic()`, as
`tests.infra.smtp_recorder` does), so tests compare its times with other servers' times.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from types import TracebackType

STEPS = ("greeting", "EHLO", "MAIL", "RCPT", "DATA", "end", "RSET", "QUIT")


@dataclass(frozen=True)
class Accepted:
    mail_from: str
    rcpt_to: str
    at: float  # time.monotonic() when the final 250 was sent


class Tarpit:
    def __init__(
        self,
        delay: float,
        host: str = "127.0.0.1",
        *,
        slow: Collection[str] = STEPS,
        final_reply: bytes = b"250 2.0.0 accepted, eventually",
    ) -> None:
        if unknown := set(slow) - set(STEPS):
            raise ValueError(f"no such steps: {sorted(unknown)}")
        self.delay = delay
        self.slow = frozenset(slow)
        self.final_reply = final_reply
        self.host = host
        self.port = 0
        self.opened: list[float] = []  # time.monotonic() of each connection
        self.accepted: list[Accepted] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tarpit", daemon=True)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def messages(self) -> list[Accepted]:
        with self._lock:
            return list(self.accepted)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self.opened)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, self.host, 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        with self._lock:
            self.opened.append(time.monotonic())

        async def reply(step: str, text: bytes) -> None:
            if step in self.slow:
                await asyncio.sleep(self.delay)
            writer.write(text + b"\r\n")
            await writer.drain()

        mail_from = rcpt_to = ""
        try:
            await reply("greeting", b"220 tarpit.test ESMTP")
            while line := await reader.readline():
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
                argument = line.decode(errors="replace").strip()
                if verb == b"EHLO":
                    await reply("EHLO", b"250-tarpit.test\r\n250 8BITMIME")
                elif verb in (b"HELO", b"RSET", b"NOOP"):
                    await reply("RSET", b"250 2.0.0 OK")
                elif verb == b"MAIL":
                    mail_from = argument.partition(":")[2].strip().strip("<>")
                    await reply("MAIL", b"250 2.1.0 OK")
                elif verb == b"RCPT":
                    rcpt_to = argument.partition(":")[2].strip().strip("<>")
                    await reply("RCPT", b"250 2.1.5 OK")
                elif verb == b"DATA":
                    await reply("DATA", b"354 go ahead")
                    while await reader.readline() not in (b".\r\n", b""):
                        pass
                    if "end" in self.slow:
                        await asyncio.sleep(self.delay)
                    with self._lock:
                        self.accepted.append(Accepted(mail_from, rcpt_to, time.monotonic()))
                    writer.write(self.final_reply + b"\r\n")
                    await writer.drain()
                elif verb == b"QUIT":
                    await reply("QUIT", b"221 2.0.0 bye")
                    break
                else:
                    await reply("RSET", b"502 5.5.2 not here")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._sessions.discard(task)

    def __enter__(self) -> Tarpit:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("tarpit did not start")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for session in list(self._sessions):
                session.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
