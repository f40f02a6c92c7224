"""The ingest listener on a real socket, as `python -m mailstream.ingest` serves it (uvicorn with the guarded
protocol and the body deadline), with short limits: a client dribbling its headers is disconnected, a dribbled body
is answered 408, one connection past the cap 503 — and a normal request, or a connection idle between requests
(keep-alive, apart from the header timeout), is unaffected."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from mailstream.events.topics import ACCEPTED
from mailstream.ingest.http_guard import guard, server_options
from tests.infra.ingest_app import ACME_KEY, IngestApp

HEADER_TIMEOUT, BODY_TIMEOUT = 0.4, 0.4
PATIENCE = 10.0  # how long a test dribbles before it gives up on the server: far beyond the limits
BODY = json.dumps(
    {"envelope_sender": "s@acme.test", "recipients": [{"email": "r@example.com"}], "content": "Subject: s\r\n\r\nt\r\n"}
).encode()


@dataclass
class Listener:
    ingest: IngestApp
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def serve(tmp_path: Path, **limits: Any) -> AsyncIterator[Listener]:
    ingest = IngestApp.build(tmp_path / "status.sqlite3", **limits)
    guard(ingest.app, ingest.config.ingest)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        ingest.app,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=2,  # a regression fails the test, never hangs it
        **server_options(ingest.config.ingest),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn's Server has a flag, no event
        await asyncio.sleep(0.01)
    try:
        yield Listener(ingest, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        ingest.close()


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    async for running in serve(tmp_path, header_timeout=f"{HEADER_TIMEOUT}s", body_timeout=f"{BODY_TIMEOUT}s"):
        yield running


def request_head(length: int = len(BODY), keep_alive: bool = True) -> bytes:
    return (
        f"POST /api/inject/v1 HTTP/1.1\r\nHost: ingest.test\r\nAuthorization: Bearer {ACME_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader, first: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """An answer's status, headers and body; `first`: what of it was read already."""
    head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    status_line, *lines = head.decode().split("\r\n")[:-2]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def dribble_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: bytes) -> float:
    """Sends `chunks` a byte every 50 ms until the server closes the connection; the loop's time then."""
    for byte in chunks:
        if reader.at_eof() or writer.is_closing():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        try:
            if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                break
        except TimeoutError:
            continue
        pytest.fail("the server answered a request whose headers never ended")
    else:
        pytest.fail(f"the server still listened after {len(chunks) * 0.05:.0f} s of dribbled headers")
    return asyncio.get_running_loop().time()


async def test_a_client_dribbling_its_headers_is_cut_off(listener: Listener) -> None:
    start = asyncio.get_running_loop().time()  # before the server can have started its clock
    reader, writer = await listener.connect()
    endless = b"GET /healthz HTTP/1.1\r\nHost: ingest.test\r\n" + b"X-Slow: " + b"a" * int(PATIENCE / 0.05)
    took = await dribble_until_closed(reader, writer, endless) - start
    assert HEADER_TIMEOUT <= took < PATIENCE
    writer.close()


async def test_a_connection_that_says_nothing_is_closed(listener: Listener) -> None:
    reader, writer = await listener.connect()
    assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
    writer.close()


async def test_a_dribbled_body_is_408_and_nothing_is_written(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(request_head())
    first = b""
    for byte in BODY[: int(BODY_TIMEOUT * 2 / 0.05)]:  # a byte every 50 ms, for twice the deadline, then no more
        writer.write(bytes([byte]))
        await writer.drain()
        try:
            first = await asyncio.wait_for(reader.read(1), 0.05)
            break  # the answer has begun: stop sending before the server's close makes a write fail
        except TimeoutError:
            continue
    status, headers, body = await read_response(reader, first)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Request timeout",
        "status": 408,
        "detail": f"the request body did not arrive within {BODY_TIMEOUT:g} s",
    }
    assert await asyncio.wait_for(reader.read(), PATIENCE) == b""  # and the connection is closed
    assert listener.ingest.producer.records(ACCEPTED) == []
    writer.close()


async def test_normal_requests_and_an_idle_kept_alive_connection_are_unaffected(listener: Listener) -> None:
    reader, writer = await listener.connect()
    for _ in range(2):
        writer.write(request_head() + BODY)
        status, _, body = await read_response(reader)
        assert status == 200, body
        assert json.loads(body)["success_count"] == 1
        await asyncio.sleep(HEADER_TIMEOUT * 2)  # idle between requests: keep-alive's business, not a slow header
    assert len(listener.ingest.producer.records(ACCEPTED)) == 2
    writer.close()


async def test_a_connection_past_the_cap_is_503_with_retry_after(tmp_path: Path) -> None:
    async for running in serve(tmp_path, max_connections=2):
        held = [await running.connect() for _ in range(2)]
        reader, writer = await running.connect()
        status, headers, body = await read_response(reader)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["detail"] == "this replica holds its 2 connections; try again shortly"
        writer.close()
        for _, held_writer in held:
            held_writer.close()
            await held_writer.wait_closed()
        await asyncio.sleep(0.1)  # the server sees them go
        reader, writer = await running.connect()
        writer.write(request_head(keep_alive=False) + BODY)
        assert (await read_response(reader))[0] == 200
        writer.close()
