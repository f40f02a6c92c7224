"""SMTP submission is held to the tenant's sender domains (`tenants.<t>.sender_domains`), the setting the HTTP API
uses: MAIL FROM and every From address; a user's own `sender_domains` may narrow them. Ingress is not held."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from tests.infra.gateway import ACME_PASSWORD, ACME_USER, GLOBEX_PASSWORD, GLOBEX_USER, INGRESS_DOMAIN
from tests.infra.gateway_app import GatewayApp, gateway_app

TENANTS = {"globex": {"sender_domains": ["globex.test"]}, "acme": {"sender_domains": ["acme.test", "acme2.test"]}}


def message(sender: str) -> bytes:
    return f"From: {sender}\r\nTo: r@example.test\r\nSubject: hello\r\n\r\nHi.\r\n".encode()


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[GatewayApp]:
    async with gateway_app(tmp_path, tenants=TENANTS) as running:
        yield running


async def client(app: GatewayApp, login: tuple[str, str] | None, port: int | None = None) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port or app.ports.submission_plain, start_tls=False, timeout=10)
    await smtp.connect()
    await smtp.ehlo()
    if login is not None:
        await smtp.login(*login)
    return smtp


async def test_mail_from_outside_the_tenants_domains_is_550(app: GatewayApp) -> None:
    smtp = await client(app, (GLOBEX_USER, GLOBEX_PASSWORD))  # the user has no list of its own
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await smtp.mail("news@acme.test")
    assert refused.value.code == 550
    assert (
        refused.value.message
        == "5.7.1 tenant 'globex' may not send as <news@acme.test> (its sender domains: globex.test)"
    )
    errors, _ = await smtp.sendmail("news@globex.test", ["r@example.test"], message("News <news@globex.test>"))
    assert errors == {}
    await smtp.quit()
    assert [m.sender for m in app.accepted()] == ["news@globex.test"]


async def test_a_from_address_outside_the_tenants_domains_refuses_the_message(app: GatewayApp) -> None:
    smtp = await client(app, (GLOBEX_USER, GLOBEX_PASSWORD))
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await smtp.sendmail("news@globex.test", ["r@example.test"], message("News <news@globex.test>, x@acme.test"))
    assert refused.value.code == 550
    assert refused.value.message.startswith("5.7.1 tenant 'globex' may not send as <x@acme.test>")
    await smtp.quit()
    assert app.accepted() == []
    assert app.bodies() == 0  # refused before anything was written


async def test_a_users_own_list_narrows_the_tenants(app: GatewayApp) -> None:
    smtp = await client(app, (ACME_USER, ACME_PASSWORD))  # its user may use acme.test only
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await smtp.mail("app@acme2.test")
    assert refused.value.message == "5.7.1 user 'acme-app' may not send as <app@acme2.test>"
    await smtp.quit()


async def test_ingress_mail_from_anyone_is_still_received(app: GatewayApp) -> None:
    smtp = await client(app, None, port=app.ports.ingress)
    errors, _ = await smtp.sendmail("stranger@elsewhere.test", [f"ops@{INGRESS_DOMAIN}"], message("x@elsewhere.test"))
    assert errors == {}
    await smtp.quit()
    assert [m.tenant for m in app.accepted()] == ["acme"]
