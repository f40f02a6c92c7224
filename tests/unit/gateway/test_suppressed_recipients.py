"""The gateway refuses a recipient on its tenant's suppression list at RCPT, 550 5.1.1 with the entry's reason,
and the session goes on for the others; another tenant's mail to it goes; until the list has been read, RCPT
answers 451 4.3.0 rather than let a listed address through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiosmtplib
import pytest

from mailstream.events.records import Suppression
from mailstream.intake.suppression_view import SuppressionView
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, GLOBEX_PASSWORD, GLOBEX_USER, INGRESS_DOMAIN
from tests.infra.gateway_app import START, GatewayApp, gateway_app

MESSAGE = b"From: app@acme.test\r\nTo: someone\r\nSubject: hello\r\n\r\nHi.\r\n"
LISTED = "ann@example.com"


def entry(address: str, tenant: str, **fields: object) -> Suppression:
    return Suppression(
        address=address,
        tenant=tenant,
        reason="hard bounce: 550 5.1.1 user unknown",
        source="bounce",
        created_at=START,
        created_by="scheduler",
        **fields,
    )


@pytest.fixture
def view() -> SuppressionView:
    lists = SuppressionView()
    lists.apply(entry(LISTED, "acme"))
    lists.apply(entry(f"soon@{INGRESS_DOMAIN}", "acme", expires_at=START + timedelta(minutes=5)))
    lists.caught_up.set()
    return lists


@pytest.fixture
async def app(tmp_path: Path, view: SuppressionView) -> AsyncIterator[GatewayApp]:
    async with gateway_app(tmp_path, suppressions=view) as running:
        yield running


async def client(app: GatewayApp, login: tuple[str, str] | None, port: int | None = None) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port or app.ports.submission_plain, start_tls=False, timeout=10)
    await smtp.connect()
    await smtp.ehlo()
    if login is not None:
        await smtp.login(*login)
    return smtp


async def rcpt(smtp: aiosmtplib.SMTP, address: str) -> tuple[int, str]:
    """RCPT TO, its reply as given (aiosmtplib's rcpt raises on a refusal)."""
    response = await smtp.execute_command(f"RCPT TO:{address}".encode())
    return response.code, response.message


async def test_a_listed_recipient_is_refused_at_rcpt_and_the_others_go_on(app: GatewayApp) -> None:
    smtp = await client(app, (ACME_USER, ACME_PASSWORD))
    await smtp.mail("app@acme.test")
    code, reply = await rcpt(smtp, "<Ann@Example.com>")
    assert code == 550
    assert reply == f"5.1.1 <{LISTED}> is on the suppression list: hard bounce: 550 5.1.1 user unknown"
    assert (await rcpt(smtp, "<bob@example.com>"))[0] == 250
    assert (await smtp.data(MESSAGE))[0] == 250
    await smtp.quit()
    assert [m.recipient for m in app.accepted()] == ["bob@example.com"]


async def test_another_tenants_mail_to_the_address_goes(app: GatewayApp) -> None:
    smtp = await client(app, (GLOBEX_USER, GLOBEX_PASSWORD))
    errors, _ = await smtp.sendmail("app@globex.test", [LISTED], MESSAGE.replace(b"acme", b"globex"))
    assert errors == {}
    await smtp.quit()
    assert [(m.tenant, m.recipient) for m in app.accepted()] == [("globex", LISTED)]


async def test_ingress_mail_is_held_to_the_receiving_tenants_list_until_an_entry_expires(app: GatewayApp) -> None:
    smtp = await client(app, None, app.ports.ingress)
    await smtp.mail("someone@elsewhere.test")
    assert (await rcpt(smtp, f"<soon@{INGRESS_DOMAIN}>"))[0] == 550
    await smtp.rset()
    app.clock.advance(timedelta(minutes=5))  # its expiry: it no longer applies
    await smtp.mail("someone@elsewhere.test")
    assert (await rcpt(smtp, f"<soon@{INGRESS_DOMAIN}>"))[0] == 250
    await smtp.quit()


async def test_until_the_list_is_read_rcpt_is_451(app: GatewayApp, view: SuppressionView) -> None:
    view.caught_up.clear()
    smtp = await client(app, (ACME_USER, ACME_PASSWORD))
    await smtp.mail("app@acme.test")
    code, reply = await rcpt(smtp, "<bob@example.com>")
    assert (code, reply) == (451, "4.3.0 the suppression list is still loading, try again later")
    await smtp.quit()
    assert app.accepted() == []
