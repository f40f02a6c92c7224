"""The listener's own limits, below the routes: request headers within `ingest.header_timeout` (a client that
dribbles them, slowloris, is disconnected), the whole body within `ingest.body_timeout` (else 408), and at most
`ingest.max_connections` connections (one more is answered 503 with Retry-After).

uvicorn has none of the first two (its `timeout_keep_alive` is the idle time *between* requests, which stays
separate), and its `limit_concurrency` answers a bare text 503. The header timer lives in a subclass of its
httptools protocol, from the connection's first byte or the request's (`on_message_begin`) to
`on_headers_complete`; the body deadline is an ASGI middleware that reads the body before the app runs, so a
request cut off there has reached no route and written nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mailstream.config.model import IngestConfig
from mailstream.ingest.problems import PROBLEM_JSON

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
OVERLOADED_RETRY_AFTER = b"1"


def problem_bytes(status: int, title: str, detail: str) -> bytes:
    return json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()


def _response(status: int, reason: str, body: bytes, extra: list[tuple[bytes, bytes]]) -> bytes:
    head = [f"HTTP/1.1 {status} {reason}".encode(), b"content-type: " + PROBLEM_JSON.encode()]
    head += [b"content-length: " + str(len(body)).encode(), b"connection: close"]
    head += [name + b": " + value for name, value in extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedProtocol(HttpToolsProtocol):
    """Set by `guarded_protocol`: seconds from a request's first byte to its last header; connections at most."""

    header_timeout: float = 10.0
    max_connections: int = 10_000

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            detail = f"this replica holds its {self.max_connections} connections; try again shortly"
            body = problem_bytes(503, "Service unavailable", detail)
            transport.write(_response(503, "Service Unavailable", body, [(b"retry-after", OVERLOADED_RETRY_AFTER)]))
            transport.close()
            return
        self._arm()  # a connection that sends nothing at all is cut as one that sends too little

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # the next request on a kept-alive connection: its first byte starts the clock

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self.logger.info("request headers not complete within %.1f s: connection closed", self.header_timeout)
        self.transport.close()


def guarded_protocol(config: IngestConfig) -> type[GuardedProtocol]:
    """The protocol class for uvicorn's `http=`, carrying this configuration's limits."""
    limits = {"header_timeout": config.header_timeout.total_seconds(), "max_connections": config.max_connections}
    return type("IngestHttpProtocol", (GuardedProtocol,), limits)


class BodyDeadline:
    """Reads a request's body, up to `limit` bytes, before the app sees the request: if the body is not all there
    within `timeout`, the answer is a 408 problem (and the connection closes), and the app is never called. Past
    `limit` the rest is left to the app, which answers 413 at once."""

    def __init__(self, app: ASGIApp, timeout: float, limit: int) -> None:
        self.app, self.timeout, self.limit = app, timeout, limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        try:
            async with asyncio.timeout(self.timeout):
                size, more = 0, True
                while more and size <= self.limit:
                    message = await receive()
                    read.append(message)
                    size += len(message.get("body", b""))
                    more = message["type"] == "http.request" and bool(message.get("more_body"))
        except TimeoutError:
            await self._too_slow(send)
            return

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)

    async def _too_slow(self, send: Send) -> None:
        body = problem_bytes(408, "Request timeout", f"the request body did not arrive within {self.timeout:g} s")
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 408, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def server_options(config: IngestConfig) -> dict[str, Any]:
    """uvicorn's options for the ingest listener (beside the app, host and port)."""
    # Keep-alive longer than clients' and load balancers' idle timeouts, so the server is not the side that closes
    # a connection a client is about to reuse (the client's request then fails mid-send).
    return {"http": guarded_protocol(config), "timeout_keep_alive": 75, "log_config": None, "access_log": False}


def guard(app: Any, config: IngestConfig) -> None:
    """Add the body deadline to a Starlette/FastAPI app (inside its error handling, before its routes)."""
    app.add_middleware(BodyDeadline, timeout=config.body_timeout.total_seconds(), limit=config.request_body_limit)
