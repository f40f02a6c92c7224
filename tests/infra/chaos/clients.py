"""The chaos run's clients, as well-behaved as a careful application: they retry what the server asks them to.

HTTP: batches of recipients, each request with its own Idempotency-Key, retried with the same key on 503,
409, 429, a timeout or a refused connection until a deadline. SMTP (the gateway's plain submission
listener, AUTH PLAIN): one recipient per message, retried on any 4xx reply or a lost connection, on a new
connection. Each message has a recipient of its own, so the sink and the status topic tell them apart.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from dataclasses import dataclass, field
from email.utils import make_msgid

import httpx

from tests.infra.gateway import ACME_PASSWORD, ACME_USER
from tests.infra.stack import ACME_KEY

RETRYABLE = {409, 429, 502, 503, 504}
SENDER = "app@acme.test"


@dataclass
class Submission:
    door: str  # "http" | "smtp"
    recipient: str
    accepted: bool = False
    transaction: str | None = None  # HTTP: the id the answer named
    tries: int = 0
    refusal: str | None = None  # the permanent answer, or why the client gave up


@dataclass
class Unexpected:
    """Answers a well-behaved client should never see (a 500, a 4xx for a valid request): findings."""

    seen: list[str] = field(default_factory=list)


def message(recipient: str, n: int) -> str:
    return (
        f"From: Chaos <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: chaos {n}\r\n"
        f"Message-ID: {make_msgid(domain='acme.test')}\r\n\r\nMessage {n} of the chaos run.\r\n"
    )


def submit_http(api: str, batch: list[Submission], deadline: float, unexpected: Unexpected) -> None:
    """One inject request for the batch, retried with one Idempotency-Key until answered or `deadline`."""
    key = uuid.uuid4().hex
    body = {
        "envelope_sender": SENDER,
        "template_dialect": "Static",
        "recipients": [{"email": s.recipient} for s in batch],
        "content": message(batch[0].recipient, 0),
    }
    headers = {"Authorization": f"Bearer {ACME_KEY}", "Idempotency-Key": key}
    with httpx.Client(base_url=api, headers=headers, timeout=20.0) as client:
        while time.monotonic() < deadline:
            for s in batch:
                s.tries += 1
            try:
                r = client.post("/api/inject/v1", json=body)
            except httpx.TransportError:
                time.sleep(0.5)
                continue
            if r.status_code in RETRYABLE:
                time.sleep(min(float(r.headers.get("Retry-After", "1") or 1), 2.0))
                continue
            if r.status_code != 200:
                unexpected.seen.append(f"HTTP {r.status_code}: {r.text[:300]}")
                if r.status_code >= 500:
                    time.sleep(1.0)
                    continue
                break
            ids = {t["recipient"]: t["id"] for t in r.json()["transactions"]}
            for s in batch:
                s.accepted, s.transaction = s.recipient in ids, ids.get(s.recipient)
                if not s.accepted:
                    s.refusal = "failed recipient"
            return
    for s in batch:
        s.refusal = s.refusal or "gave up: no answer before the deadline"


class SmtpClient:
    """One submission connection, opened again after any failure."""

    def __init__(self, port: int, unexpected: Unexpected) -> None:
        self._port = port
        self._smtp: smtplib.SMTP | None = None
        self._unexpected = unexpected

    def submit(self, s: Submission, n: int, deadline: float) -> None:
        data = message(s.recipient, n).encode()
        text: bytes | str
        while time.monotonic() < deadline:
            s.tries += 1
            try:
                smtp = self._connected()
                smtp.sendmail(SENDER, [s.recipient], data)
                s.accepted = True
                return
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
            except smtplib.SMTPResponseException as exc:  # MAIL, DATA or AUTH refused
                code, text = exc.smtp_code, exc.smtp_error
            except (smtplib.SMTPException, OSError):  # lost connection, refused, timed out: the outcome unknown
                code, text = 421, b"connection lost"
            self.close()
            if code >= 500:
                s.refusal = f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
                self._unexpected.seen.append(f"SMTP {s.refusal}")
                return
            time.sleep(0.5)
        s.refusal = "gave up: no answer before the deadline"

    def _connected(self) -> smtplib.SMTP:
        if self._smtp is None:
            smtp = smtplib.SMTP("127.0.0.1", self._port, timeout=30)
            try:
                smtp.login(ACME_USER, ACME_PASSWORD)
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None
