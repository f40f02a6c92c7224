"""Bounces and complaints arriving at a bounce domain on an ingress listener: parsed, handed to stage 1 as an
OutOfBandReport keyed by the transaction's tenant, never queued; every report answered 250, matched or not.

Real SMTP on loopback into the gateway over the in-memory event log; the reports are the samples of
tests/unit/core/reports (Postfix, Gmail, Yahoo formats)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from prometheus_client import REGISTRY

from mailstream.core.trace_header import TraceRef, encode
from mailstream.core.trace_header import decode as decode_trace
from mailstream.events.records import MessageBody, OutOfBandReport
from mailstream.events.serde import decode
from mailstream.events.topics import BODIES, QUEUE_COMMANDS
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, INGRESS_DOMAIN
from tests.infra.gateway_app import GatewayApp, gateway_app

SAMPLES = Path(__file__).parents[1] / "core" / "reports"
SAMPLE_REF = encode(TraceRef("5e0c8a7f3b2d4e1f9a6b7c8d9e0f1a2b", "acme", "ann@example.com")).encode()
TX = "a1" * 16
BOUNCES = "bounces.acme.test"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def dsn_for(tx: str, tenant: str = "globex") -> bytes:
    ref = encode(TraceRef(tx, tenant, "ann@example.com")).encode()
    return sample("postfix_dsn.eml").replace(SAMPLE_REF, ref)


def counted(kind: str, result: str) -> float:
    return REGISTRY.get_sample_value("mailstream_gateway_reports_total", {"kind": kind, "result": result}) or 0.0


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[GatewayApp]:
    async with gateway_app(tmp_path, bounce_domains=[{"domain": BOUNCES, "tenant": "acme"}]) as running:
        yield running


def reports(app: GatewayApp) -> list[tuple[bytes | None, OutOfBandReport]]:
    out = []
    for r in app.producer.bus.read(QUEUE_COMMANDS.name):
        record = QUEUE_COMMANDS.decode(r.value)
        if isinstance(record, OutOfBandReport):
            out.append((r.key, record))
    return out


async def send(app: GatewayApp, data: bytes, to: list[str], sender: str = "") -> tuple[int, str]:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=app.ports.ingress, start_tls=False, timeout=10)
    await smtp.connect()
    await smtp.ehlo()
    await smtp.mail(sender)
    for address in to:
        await smtp.rcpt(address)
    response = await smtp.data(data)
    await smtp.quit()
    return response.code, response.message


async def test_a_dsn_with_a_trace_header_goes_to_its_tenants_partition_and_is_not_queued(app: GatewayApp) -> None:
    before = counted("dsn", "matched")
    assert await send(app, dsn_for(TX), [f"bounces@{BOUNCES}"]) == (250, "2.0.0 report received")
    [(key, report)] = reports(app)
    assert key == b"tenant:globex"  # the trace header's tenant, not the bounce domain's
    assert (report.transaction_id, report.tenant, report.kind, report.matched_by) == (
        TX,
        "globex",
        "dsn",
        "trace_header",
    )
    assert report.response is not None
    assert (report.response.code, report.response.enhanced_code) == (550, "5.1.1")
    assert (report.recipient, report.remote_mta, report.reported_by) == (
        "ann@example.com",
        "mailstore.example.com",
        "127.0.0.1",
    )
    assert app.accepted() == []
    assert counted("dsn", "matched") == before + 1


async def test_a_dsn_matched_by_its_verp_address_takes_the_bounce_domains_tenant(app: GatewayApp) -> None:
    assert (await send(app, sample("gmail_dsn.eml"), [f"b-5e0c8a7f3b2d4e1f9a6b7c8d9e0f1a2b@{BOUNCES}"]))[0] == 250
    [(key, report)] = reports(app)
    assert (key, report.matched_by, report.tenant) == (b"tenant:acme", "verp", "acme")
    assert report.transaction_id == "5e0c8a7f3b2d4e1f9a6b7c8d9e0f1a2b"


async def test_a_complaint_is_handed_on(app: GatewayApp) -> None:
    assert (await send(app, sample("yahoo_arf.eml"), [f"fbl@{BOUNCES}"], "feedback@arf.mail.yahoo.example"))[0] == 250
    [(_, report)] = reports(app)
    assert (report.kind, report.feedback_type, report.recipient) == ("feedback", "abuse", "carol@yahoo.example")


@pytest.mark.parametrize(
    ("data", "kind", "result"),
    [
        (b"Subject: out of office\r\n\r\nI am away until Monday.\r\n", "none", "unparsable"),
        (sample("gmail_dsn.eml"), "dsn", "unmatched"),  # to no VERP address, no trace header
        (dsn_for(TX).replace(b"Action: failed", b"Action: delayed"), "dsn", "ignored"),
    ],
)
async def test_what_names_no_transaction_is_answered_250_counted_and_kept_and_nothing_else(
    app: GatewayApp, data: bytes, kind: str, result: str
) -> None:
    before = counted(kind, result)
    assert (await send(app, data, [f"bounces@{BOUNCES}"]))[0] == 250
    assert reports(app) == []
    assert app.accepted() == []
    assert counted(kind, result) == before + 1
    assert len(app.producer.bus.read(BODIES.name)) == 1  # the report's bytes, named in the log line


async def test_a_report_beside_ordinary_ingress_mail_leaves_that_mail_queued(app: GatewayApp) -> None:
    assert (await send(app, dsn_for(TX), [f"bounces@{BOUNCES}", f"postmaster@{INGRESS_DOMAIN}"]))[0] == 250
    assert len(reports(app)) == 1
    assert [m.recipient for m in app.accepted()] == [f"postmaster@{INGRESS_DOMAIN}"]


@pytest.mark.parametrize("traced", [True, False])
async def test_submitted_mail_carries_the_trace_header_when_configured(tmp_path: Path, traced: bool) -> None:
    async with gateway_app(tmp_path, trace_submitted=traced, trace_header="X-Acme-Ref") as app:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=app.ports.submission_plain, start_tls=False, timeout=10)
        await smtp.connect()
        await smtp.login(ACME_USER, ACME_PASSWORD)
        message = b"From: app@acme.test\r\nTo: x\r\nSubject: s\r\n\r\nHi.\r\n"
        errors, _ = await smtp.sendmail("app@acme.test", ["ann@example.com", "bob@example.com"], message)
        await smtp.quit()
        assert errors == {}
        written = [decode(r.value, MessageBody) for r in app.producer.bus.read(BODIES.name)]
        bodies = {b.sha256: b.data for b in written}
        found = []
        for msg in app.accepted():
            data = bodies[msg.body.sha256]
            lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            value = next((line[12:] for line in lines if line.startswith(b"X-Acme-Ref: ")), None)
            found.append(decode_trace(value.decode()) if value is not None else None)
        expected = [TraceRef(m.id, "acme", m.recipient) for m in app.accepted()] if traced else [None, None]
        assert found == expected
