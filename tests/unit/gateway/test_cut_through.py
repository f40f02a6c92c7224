"""Cut-through: Koukan's table as a pure function, and the DATA reply waiting on first attempts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosmtplib
import pytest

from mailstream.events.records import LogRecord
from mailstream.events.serde import decode
from mailstream.events.topics import EVENTS
from mailstream.gateway.cut_through import FirstAttempt, Mode, Then, decide
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, INGRESS_DOMAIN
from tests.infra.gateway_app import gateway_app, until

OK = FirstAttempt(250, "2.0.0", "ok")
TEMP = FirstAttempt(451, "4.3.0", "try later")
PERM = FirstAttempt(550, "5.1.1", "no such user")
PERM2 = FirstAttempt(554, "5.7.1", "rejected")
F, C, T = Then.FORWARD, Then.CANCEL, Then.TOLD


@pytest.mark.parametrize(
    ("mode", "attempts", "reply", "then"),
    [
        # submission: the server retries what is temporary; only a failure everyone got is passed on
        ("submission", [OK], "250 2.0.0 delivered", [F]),
        ("submission", [None], "250 2.0.0 queued", [F]),
        ("submission", [TEMP], "250 2.0.0 queued", [F]),
        ("submission", [PERM], "550 5.1.1 no such user", [T]),
        ("submission", [PERM, PERM2], "550 5.1.1 no such user", [T, T]),
        ("submission", [PERM, OK], "250 2.0.0 queued", [F, F]),
        ("submission", [PERM, None], "250 2.0.0 queued", [F, F]),
        ("submission", [TEMP, None], "250 2.0.0 queued", [F, F]),
        # ingress: the sending MTA retries what is temporary itself, so mailstream stops
        ("ingress", [OK, OK], "250 2.0.0 delivered", [F, F]),
        ("ingress", [None], "450 4.4.1 no answer from the destination in time, try again later", [C]),
        ("ingress", [TEMP], "451 4.3.0 try later", [C]),
        ("ingress", [None, TEMP], "451 4.3.0 try later", [C, C]),
        ("ingress", [PERM], "550 5.1.1 no such user", [T]),
        ("ingress", [PERM, TEMP], "250 2.0.0 queued", [F, F]),
        ("ingress", [OK, None], "250 2.0.0 queued", [F, F]),
        ("ingress", [OK, PERM], "250 2.0.0 queued", [F, F]),
    ],
)
def test_the_reply_table(mode: Mode, attempts: list[FirstAttempt | None], reply: str, then: list[Then]) -> None:
    verdict = decide(mode, attempts)
    assert (verdict.reply, list(verdict.then)) == (reply, then)


def test_a_remote_reply_is_passed_on_as_one_clean_line() -> None:
    verdict = decide("submission", [FirstAttempt(550, None, "line one\r\nline two\x00")])
    assert verdict.reply == "550 5.0.0 line one"


def test_no_recipient_is_a_bug() -> None:
    with pytest.raises(ValueError, match="at least one"):
        decide("submission", [])


async def test_data_reply_waits_for_the_first_attempt(tmp_path: Path) -> None:
    async with gateway_app(tmp_path, cut_through_wait="5s") as app:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=app.ports.submission_plain, timeout=10)
        await client.connect()
        await client.login(ACME_USER, ACME_PASSWORD)
        sending = asyncio.ensure_future(client.sendmail("app@acme.test", ["gone@example.test"], b"Subject: x\r\n\r\n"))
        await until(app.accepted)
        [message] = app.accepted()
        app.answer(message, 550, "5.1.1", "gone@example.test: no such user")
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await sending
        assert (refused.value.code, refused.value.message) == (550, "5.1.1 gone@example.test: no such user")
        assert app.cancels() == []
        # Recorded, so the notifier knows the client was told and sends no DSN.
        told = [decode(r.value, LogRecord) for r in app.producer.bus.read(EVENTS.name)]
        assert [(r.type, r.id) for r in told] == [("Reception", message.id), ("Rejection", message.id)]
        assert (told[1].response.code, told[1].bounce_classification, told[1].bounce_type) == (
            550,
            "InvalidRecipient",
            "hard",
        )
        await client.quit()


async def test_ingress_timeout_answers_450_and_cancels(tmp_path: Path) -> None:
    async with gateway_app(tmp_path, cut_through_wait="0.3s") as app:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=app.ports.ingress, timeout=10)
        await client.connect()
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.sendmail("peer@remote.test", [f"user@{INGRESS_DOMAIN}"], b"Subject: x\r\n\r\n")
        assert refused.value.code == 450
        [message] = app.accepted()
        [cancel] = app.cancels()
        assert (cancel.action, cancel.transaction_id, cancel.issued_by) == ("cancel", message.id, "tenant:acme")
        await client.quit()
