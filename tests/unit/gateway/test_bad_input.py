"""Bad input on the wire: every case gets a clear reply with an enhanced code, and nothing is half-written."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.infra.gateway import ACME_PASSWORD, ACME_USER
from tests.infra.gateway_app import GatewayApp, gateway_app, until
from tests.infra.stack import free_port

AUTH = base64.b64encode(f"\0{ACME_USER}\0{ACME_PASSWORD}".encode()).decode()


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[GatewayApp]:
    async with gateway_app(tmp_path) as running:
        yield running


class Wire:
    """A raw SMTP client: bytes out exactly as written, replies read as lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Wire:
        wire = cls(*await asyncio.open_connection("127.0.0.1", port))
        assert (await wire.reply()).startswith("220 ")
        return wire

    async def reply(self) -> str:
        """One whole reply (the last line of a multi-line one)."""
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 10)).decode()
            if len(line) < 4 or line[3] != "-":
                return line.rstrip("\r\n")

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def ready_for_data(self, port_user: bool = True) -> None:
        assert (await self.command("EHLO wire.test")).startswith("250 ")
        if port_user:
            assert (await self.command(f"AUTH PLAIN {AUTH}")).startswith("235 2.7.0")
        assert (await self.command("MAIL FROM:<app@acme.test>")).startswith("250 2.1.0")
        assert (await self.command("RCPT TO:<a@example.test>")).startswith("250 2.1.5")
        assert (await self.command("DATA")).startswith("354")

    async def close(self) -> None:
        self.writer.close()
        await asyncio.gather(self.writer.wait_closed(), return_exceptions=True)


@pytest.fixture
async def wire(app: GatewayApp) -> AsyncIterator[Wire]:
    w = await Wire.open(app.ports.submission_plain)
    yield w
    await w.close()


@pytest.mark.parametrize(
    "body",
    [
        b"Subject: x\r\n\r\nbare\nLF\r\n",
        b"Subject: x\r\n\r\nbare\rCR\r\n",
        b"Subject: x\r\n\r\nsmuggled\n.\nMAIL FROM:<evil@example.test>\r\n",
        b"Subject: x\r\n\r\nsmuggled\r.\rRCPT TO:<evil@example.test>\r\n",
    ],
)
async def test_bare_line_endings_and_smuggling_sequences_are_refused_not_split(
    app: GatewayApp, wire: Wire, body: bytes
) -> None:
    await wire.ready_for_data()
    await wire.send(body + b".\r\n")
    assert (await wire.reply()).startswith("554 5.6.0")
    assert app.accepted() == []
    assert (await wire.command("NOOP")).startswith("250 2.0.0")  # one reply: nothing was read as a command


async def test_a_line_over_998_octets_is_refused(app: GatewayApp, wire: Wire) -> None:
    await wire.ready_for_data()
    await wire.send(b"Subject: x\r\n\r\n" + b"y" * 1200 + b"\r\n.\r\n")
    assert (await wire.reply()).startswith("500 5.5.2")
    assert app.accepted() == []


@pytest.mark.parametrize(("octets", "accepted"), [(998, True), (999, False)])
async def test_the_line_limit_is_998_octets_and_the_crlf(
    app: GatewayApp, wire: Wire, octets: int, accepted: bool
) -> None:
    """RFC 5321 §4.5.3.1.6 to the octet: a line of 999 was once let through, for the next server to bounce."""
    await wire.ready_for_data()
    await wire.send(b"Subject: x\r\n\r\n" + b"y" * octets + b"\r\n.\r\n")
    answer = await wire.reply()
    if accepted:
        assert answer.startswith("250 2.0.0"), answer
        await until(lambda: len(app.accepted()) == 1)
    else:
        assert answer == "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"
        assert app.accepted() == []
    assert (await wire.command("NOOP")).startswith("250 2.0.0")  # the session goes on


async def test_a_command_line_too_long_is_refused(wire: Wire) -> None:
    assert (await wire.command("EHLO " + "h" * 2000)).startswith("500 5.5.2")


async def test_a_message_over_size_is_refused_at_mail_and_at_data(app: GatewayApp) -> None:
    wire = await Wire.open(app.ports.ingress)  # 64 KiB limit
    assert (await wire.command("EHLO wire.test")).startswith("250 ")
    assert (await wire.command("MAIL FROM:<a@b.test> SIZE=70000")).startswith("552 5.3.4")
    assert (await wire.command("MAIL FROM:<a@b.test>")).startswith("250")
    assert (await wire.command("RCPT TO:<x@inbound.test>")).startswith("250")
    assert (await wire.command("DATA")).startswith("354")
    await wire.send(b"Subject: big\r\n\r\n" + (b"z" * 900 + b"\r\n") * 80 + b".\r\n")
    assert (await wire.reply()).startswith("552 5.3.4")
    assert app.accepted() == []
    await wire.close()


async def test_too_many_recipients_get_452_and_the_others_go_on(app: GatewayApp, wire: Wire) -> None:
    assert (await wire.command("EHLO wire.test")).startswith("250 ")
    assert (await wire.command(f"AUTH PLAIN {AUTH}")).startswith("235")
    assert (await wire.command("MAIL FROM:<app@acme.test>")).startswith("250")
    replies = [await wire.command(f"RCPT TO:<r{i}@example.test>") for i in range(7)]  # the listener takes 5
    assert [r[:9] for r in replies] == ["250 2.1.5"] * 5 + ["452 4.5.3"] * 2
    assert (await wire.command("DATA")).startswith("354")
    await wire.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    assert (await wire.reply()).startswith("250 2.0.0")
    assert len(app.accepted()) == 5


async def test_unknown_and_out_of_sequence_commands_get_enhanced_codes(wire: Wire) -> None:
    assert (await wire.command("MAIL FROM:<a@b.test>")).startswith("503 5.5.1")  # no EHLO yet
    assert (await wire.command("EHLO wire.test")).startswith("250 ")
    assert (await wire.command("FROB")).startswith("500 5.5.2")
    assert (await wire.command("RCPT TO:<a@b.test>")).startswith("503 5.5.1")  # no MAIL yet
    assert (await wire.command("DATA")).startswith("503 5.5.1")
    assert (await wire.command("MAIL FROM:<app@acme.test>")).startswith("530 5.7.0")  # submission: AUTH first
    assert (await wire.command("QUIT")).startswith("221 2.0.0")


async def test_a_pipelined_transaction_gets_one_reply_per_command_in_order(app: GatewayApp, wire: Wire) -> None:
    assert (await wire.command("EHLO wire.test")).startswith("250 ")
    await wire.send(
        f"AUTH PLAIN {AUTH}\r\nMAIL FROM:<app@acme.test>\r\nRCPT TO:<a@example.test>\r\n"
        "RCPT TO:<bad address>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n".encode()
    )
    replies = [await wire.reply() for _ in range(6)]
    assert [r[:3] for r in replies] == ["235", "250", "250", "553", "250", "354"]
    await wire.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    assert (await wire.reply()).startswith("250 2.0.0")
    assert (await wire.reply()).startswith("221")
    assert [m.recipient for m in app.accepted()] == ["a@example.test", "b@example.test"]


async def test_a_flood_of_bogus_commands_ends_the_session(wire: Wire) -> None:
    await wire.send(b"BOGUS\r\n" * 200)
    replies = []
    while line := (await asyncio.wait_for(wire.reader.readline(), 10)).decode():
        replies.append(line)
    assert replies[-1].startswith("502 5.5.1")
    assert len(replies) < 200


async def test_a_client_that_stops_mid_data_leaves_nothing_written(app: GatewayApp, wire: Wire) -> None:
    await wire.ready_for_data()
    await wire.send(b"Subject: cut\r\n\r\nhalf a message")
    await wire.close()
    running = next(r for r in app.gateway.listeners if r.listener.name == "submission-plain")
    await until(lambda: not running.limits.open)  # the server has seen the session end
    assert app.accepted() == []
    assert app.bodies() == 0


async def test_non_ascii_needs_smtputf8(app: GatewayApp, wire: Wire) -> None:
    assert (await wire.command("EHLO wire.test")).startswith("250 ")
    assert (await wire.command(f"AUTH PLAIN {AUTH}")).startswith("235")
    assert (await wire.command("MAIL FROM:<app@acme.test>")).startswith("250")
    assert (await wire.command("RCPT TO:<jörg@example.test>")).startswith("553 5.6.7")
    assert (await wire.command("RCPT TO:<a@example.test>")).startswith("250")
    assert (await wire.command("DATA")).startswith("354")
    await wire.send("Subject: grüße\r\n\r\nhi\r\n.\r\n".encode())
    assert (await wire.reply()).startswith("554 5.6.7")
    assert (await wire.command("MAIL FROM:<app@acme.test> SMTPUTF8")).startswith("250")
    assert (await wire.command("RCPT TO:<jörg@example.test>")).startswith("250")
    assert (await wire.command("DATA")).startswith("354")
    await wire.send("Subject: grüße\r\n\r\nhi\r\n.\r\n".encode())
    assert (await wire.reply()).startswith("250 2.0.0")
    assert [m.recipient for m in app.accepted()] == ["jörg@example.test"]


async def test_commands_pipelined_after_starttls_are_discarded(app: GatewayApp) -> None:
    wire = await Wire.open(app.ports.submission)
    assert (await wire.command("EHLO wire.test")).startswith("250 ")
    await wire.send(b"STARTTLS\r\nMAIL FROM:<injected@acme.test>\r\n")  # the injection: sent before the handshake
    assert (await wire.reply()).startswith("220")
    await wire.writer.start_tls(app.ports.client_context(), server_hostname="127.0.0.1")
    assert (await wire.command("EHLO wire.test")).startswith("250 ")
    # Had the injected MAIL been kept, this would be a nested MAIL (503) or its reply would come first.
    assert (await wire.command("NOOP")).startswith("250 2.0.0")
    assert (await wire.command(f"AUTH PLAIN {AUTH}")).startswith("235")
    assert (await wire.command("MAIL FROM:<app@acme.test>")).startswith("250 2.1.0")
    await wire.close()


async def test_connection_limit_per_client_address(tmp_path: Path) -> None:
    async with gateway_app(tmp_path) as app:
        limits = next(r.limits for r in app.gateway.listeners if r.listener.name == "submission-plain")
        limits.per_client = 2  # the plain listener's limit, lowered for the test
        first, second = await Wire.open(app.ports.submission_plain), await Wire.open(app.ports.submission_plain)
        reader, writer = await asyncio.open_connection("127.0.0.1", app.ports.submission_plain)
        assert (await reader.readline()).startswith(b"421 4.7.0")
        assert await reader.read() == b""  # closed
        writer.close()
        await first.close()
        await until(lambda: limits.by_client["127.0.0.1"] == 1)
        third = await Wire.open(app.ports.submission_plain)  # a freed slot is taken again
        for w in (second, third):
            await w.close()


async def test_an_idle_session_is_told_and_closed(tmp_path: Path) -> None:
    async with gateway_app(tmp_path) as app:
        running = next(r for r in app.gateway.listeners if r.listener.name == "ingress")
        wire = await Wire.open(running.port)
        protocol = next(iter(running.limits.open))
        protocol._timeout_duration = 0.2  # the configured idle timeout, shortened
        protocol._reset_timeout()
        assert (await asyncio.wait_for(wire.reader.readline(), 5)).startswith(b"421 4.4.2")
        assert await wire.reader.read() == b""
        await wire.close()


async def test_behind_a_load_balancer_the_proxy_header_names_the_client(tmp_path: Path) -> None:
    port = free_port()
    proxied = {
        "name": "behind-lb",
        "port": port,
        "mode": "ingress",
        "proxy_protocol": True,
        "max_connections_per_client": 1,
    }
    async with gateway_app(tmp_path, listeners=[proxied]) as app:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n")
        wire = Wire(reader, writer)
        assert (await wire.reply()).startswith("220 ")
        assert (await wire.command("EHLO peer.example")).startswith("250 ")
        assert (await wire.command("MAIL FROM:<a@peer.example>")).startswith("250")
        assert (await wire.command("RCPT TO:<x@inbound.test>")).startswith("250")
        assert (await wire.command("DATA")).startswith("354")
        await wire.send(b"Subject: via lb\r\n\r\nhi\r\n.\r\n")
        assert (await wire.reply()).startswith("250")
        [body] = app.producer.bus.read("mail.bodies")
        assert b"([203.0.113.9])" in body.value
        limits = app.gateway.listeners[0].limits
        assert dict(limits.by_client) == {"203.0.113.9": 1}  # the real client's, not the balancer's
        # A second connection of the same client, through the same balancer, is over its limit.
        second_reader, second_writer = await asyncio.open_connection("127.0.0.1", port)
        second_writer.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 25\r\n")
        assert await asyncio.wait_for(second_reader.read(), 15) == b""
        second_writer.close()
        # A connection without a valid header gets no greeting.
        third_reader, third_writer = await asyncio.open_connection("127.0.0.1", port)
        third_writer.write(b"EHLO not-a-proxy-header\r\n")
        assert await asyncio.wait_for(third_reader.read(), 15) == b""
        third_writer.close()
        await wire.close()
