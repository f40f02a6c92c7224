"""The gateway's SMTP dialogue with real clients on loopback, over the in-memory event log."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from mailstream.events.records import QueueStats, QueueSuspension
from mailstream.events.topics import STATUS
from mailstream.intake.capacity_view import CapacityView
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, GLOBEX_PASSWORD, GLOBEX_USER, INGRESS_DOMAIN
from tests.infra.gateway_app import START, GatewayApp, gateway_app, until

MESSAGE = b"From: app@acme.test\r\nTo: someone@example.test\r\nSubject: hello\r\n\r\nHi there.\r\n"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[GatewayApp]:
    async with gateway_app(tmp_path) as running:
        yield running


async def plain_client(
    app: GatewayApp, *, login: tuple[str, str] | None = (ACME_USER, ACME_PASSWORD), port: int | None = None
) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=port or app.ports.submission_plain,
        start_tls=False,
        local_hostname="client.test",
        timeout=10,
    )
    await client.connect()
    await client.ehlo()
    if login is not None:
        await client.login(*login)
    return client


async def test_ehlo_advertises_what_a_submission_server_offers(app: GatewayApp) -> None:
    client = await plain_client(app, login=None)
    for extension in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "dsn", "auth"):
        assert client.supports_extension(extension), extension
    assert client.esmtp_extensions["size"] == str(25 * 1024 * 1024)
    assert set(client.server_auth_methods) >= {"plain", "login"}
    await client.quit()


async def test_auth_is_offered_only_after_starttls_and_binds_the_tenant(app: GatewayApp) -> None:
    context = app.ports.client_context()
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=app.ports.submission, start_tls=False, tls_context=context, timeout=10
    )
    await client.connect()
    await client.ehlo()
    assert client.supports_extension("starttls")
    assert not client.supports_extension("auth")
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await client.mail("app@acme.test")
    assert (refused.value.code, refused.value.message.split()[0]) == (530, "5.7.0")
    await client.starttls()
    await client.ehlo()
    assert not client.supports_extension("starttls")
    assert set(client.server_auth_methods) >= {"plain", "login"}
    await client.login(ACME_USER, ACME_PASSWORD)
    errors, reply = await client.sendmail("app@acme.test", ["someone@example.test"], MESSAGE)
    assert errors == {}
    assert reply.startswith("2.0.0 queued as")
    [accepted] = app.accepted()
    assert accepted.tenant == "acme"
    assert accepted.queue == "acme@example.test"
    assert accepted.reception_protocol == "ESMTP"
    [body] = app.producer.bus.read("mail.bodies")
    assert b"([127.0.0.1])" in body.value  # the client address outlives the session STARTTLS restarts
    assert b"with ESMTPSA" in body.value
    await client.quit()
    limits = next(r.limits for r in app.gateway.listeners if r.listener.name == "submission")
    await until(lambda: not limits.by_client)  # the connection's slot is given back under its address


async def test_implicit_tls_listener_speaks_tls_from_the_first_byte(app: GatewayApp) -> None:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=app.ports.smtps, use_tls=True, tls_context=app.ports.client_context(), timeout=10
    )
    await client.connect()
    await client.ehlo()
    await client.login(GLOBEX_USER, GLOBEX_PASSWORD)  # AUTH offered: the session is encrypted
    errors, _ = await client.sendmail("news@globex.test", ["reader@example.test"], MESSAGE)
    assert errors == {}
    assert [m.tenant for m in app.accepted()] == ["globex"]
    await client.quit()


async def test_multi_recipient_transaction_becomes_one_transaction_each_with_one_body(app: GatewayApp) -> None:
    client = await plain_client(app)
    recipients = ["a@example.test", "b@example.test", "c@other.test"]
    errors, _ = await client.sendmail("app@acme.test", recipients, MESSAGE)
    assert errors == {}
    accepted = app.accepted()
    assert [m.recipient for m in accepted] == recipients
    assert len({m.id for m in accepted}) == 3
    assert len({(m.body.partition, m.body.offset) for m in accepted}) == 1
    assert app.bodies() == 1
    statuses = app.producer.bus.read(STATUS.name)
    assert len(statuses) == 3
    await client.quit()


async def test_written_message_carries_a_trace_field_and_the_ids_a_submission_server_adds(app: GatewayApp) -> None:
    client = await plain_client(app)
    await client.sendmail("app@acme.test", ["a@example.test"], MESSAGE)
    [accepted] = app.accepted()
    [body] = [r for r in app.producer.bus.read("mail.bodies")]
    data = body.value
    assert b"Received: from client.test ([127.0.0.1])" in data
    assert b"with ESMTPA" in data
    assert b"Message-ID: <" in data
    assert b"Date: " in data
    assert accepted.message_id.endswith("@gateway.mailstream.test")
    assert accepted.headers["Subject"] == "hello"
    await client.quit()


async def test_sender_domains_of_a_tenant_are_enforced(app: GatewayApp) -> None:
    client = await plain_client(app)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await client.mail("ceo@elsewhere.test")
    assert (refused.value.code, refused.value.message.split()[0]) == (550, "5.7.1")
    code, _ = await client.mail("ops@acme.test")
    assert code == 250
    await client.quit()
    assert app.accepted() == []


async def test_wrong_password_is_refused_slowly_and_guessing_is_bounded(app: GatewayApp) -> None:
    client = await plain_client(app, login=None)
    for _ in range(3):
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.auth_plain(ACME_USER, "wrong")
        assert refused.value.code == 535
        assert refused.value.message.startswith("5.7.8")
    # The right password no longer helps from this address until the window has passed.
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as blocked:
        await client.auth_plain(ACME_USER, ACME_PASSWORD)
    assert blocked.value.code == 454
    assert blocked.value.message.startswith("4.7.0")
    await client.quit()


async def test_dsn_parameters_are_kept_on_each_recipients_message(app: GatewayApp) -> None:
    client = await plain_client(app)
    await client.mail("app@acme.test", options=["RET=HDRS", "ENVID=QQ314159"])
    await client.rcpt("a@example.test", options=["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;a@example.test"])
    await client.rcpt("b@example.test", options=["NOTIFY=NEVER"])
    await client.data(MESSAGE)
    a, b = app.accepted()
    assert a.metadata == {
        "dsn_notify": "FAILURE,DELAY",
        "dsn_orcpt": "rfc822;a@example.test",
        "dsn_ret": "HDRS",
        "dsn_envid": "QQ314159",
    }
    assert b.metadata == {"dsn_notify": "NEVER", "dsn_ret": "HDRS", "dsn_envid": "QQ314159"}
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await client.mail("app@acme.test", options=["RET=ALL"])
    assert (refused.value.code, refused.value.message.split()[0]) == (501, "5.5.4")
    await client.quit()


async def test_ingress_receives_only_for_its_domains_and_takes_the_null_sender(app: GatewayApp) -> None:
    client = await plain_client(app, login=None, port=app.ports.ingress)
    assert not client.supports_extension("auth")
    await client.mail("")
    with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
        await client.rcpt("victim@example.test")
    assert (refused.value.code, refused.value.message.split()[0]) == (550, "5.7.1")
    assert "relay denied" in refused.value.message
    code, _ = await client.rcpt(f"postmaster@{INGRESS_DOMAIN}")
    assert code == 250
    code, _ = await client.data(MESSAGE)
    assert code == 250
    [accepted] = app.accepted()
    assert (accepted.sender, accepted.recipient, accepted.tenant) == ("", f"postmaster@{INGRESS_DOMAIN}", "acme")
    await client.quit()


async def test_event_log_down_answers_451_and_writes_nothing(app: GatewayApp) -> None:
    client = await plain_client(app)
    app.producer.unavailable = "broker down"
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await client.sendmail("app@acme.test", ["a@example.test"], MESSAGE)
    assert refused.value.code == 451
    assert refused.value.message.startswith("4.3.0")
    app.producer.unavailable = None
    assert app.accepted() == []
    errors, _ = await client.sendmail("app@acme.test", ["a@example.test"], MESSAGE)  # the session goes on
    assert errors == {}
    assert len(app.accepted()) == 1
    await client.quit()


async def test_a_failed_transaction_answers_451_and_leaves_no_record_of_the_message(app: GatewayApp) -> None:
    client = await plain_client(app)
    app.transactions.fail_next = 1  # the records' transaction aborts, after the body was written
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await client.sendmail("app@acme.test", ["a@example.test", "b@example.test"], MESSAGE)
    assert refused.value.code == 451
    assert app.accepted() == []
    assert app.producer.bus.read(STATUS.name) == []
    assert app.producer.bus.read("mail.events") == []
    errors, _ = await client.sendmail("app@acme.test", ["a@example.test", "b@example.test"], MESSAGE)
    assert errors == {}
    assert len(app.accepted()) == 2  # the retry lands each recipient once
    await client.quit()


async def test_stdlib_smtplib_submits_over_starttls_with_auth_login(app: GatewayApp) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", app.ports.submission, timeout=10) as smtp:
            smtp.starttls(context=app.ports.client_context())
            smtp.ehlo("stdlib.test")
            smtp.login(ACME_USER, ACME_PASSWORD, initial_response_ok=False)  # LOGIN: username, then password
            return smtp.sendmail("app@acme.test", ["x@example.test", "y@example.test"], MESSAGE)

    assert await asyncio.to_thread(send) == {}
    assert [m.recipient for m in app.accepted()] == ["x@example.test", "y@example.test"]


async def test_shutdown_finishes_the_transaction_in_progress_and_refuses_new_ones(tmp_path: Path) -> None:
    async with gateway_app(tmp_path) as app:
        busy = await plain_client(app)
        idle = await plain_client(app)
        await busy.mail("app@acme.test")
        await busy.rcpt("a@example.test")
        stopping = asyncio.ensure_future(app.gateway.stop(grace=10))
        with pytest.raises(aiosmtplib.SMTPResponseException) as told:
            await idle.noop()  # between transactions: told 421 4.3.2 and closed
        assert (told.value.code, told.value.message.split()[0]) == (421, "4.3.2")
        code, _ = await busy.data(MESSAGE)  # in a transaction: it is finished
        assert code == 250
        assert len(app.accepted()) == 1
        with pytest.raises(aiosmtplib.SMTPResponseException) as after:
            await busy.mail("app@acme.test")
        assert after.value.code == 421
        await asyncio.wait_for(stopping, 10)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", app.ports.submission_plain)  # no longer listening


async def test_a_draining_queue_refuses_its_recipients_at_rcpt_and_the_others_go_on(tmp_path: Path) -> None:
    capacity = CapacityView()
    draining = QueueSuspension(
        id="cmd-1",
        tenant="acme",
        domain="closing.test",
        reason="migrating",
        since=START,
        issued_by="admin",
        state="draining",
    )
    capacity.stats["0/acme"] = QueueStats(partition=0, tenant="acme", rows=(), suspensions=(draining,), as_of=START)
    async with gateway_app(tmp_path, capacity=capacity) as app:
        client = await plain_client(app)
        errors, _ = await client.sendmail("app@acme.test", ["a@closing.test", "b@open.test"], MESSAGE)
        code, text = errors["a@closing.test"]
        assert (code, text.split()[0]) == (550, "5.7.1")
        assert "draining" in text
        assert [m.recipient for m in app.accepted()] == ["b@open.test"]
        await client.quit()
