"""SMTP clients that are not ours talk to the gateway and their mail ends delivered: swaks with pipelining,
TLS (STARTTLS and implicit) and AUTH PLAIN/LOGIN, and Postfix's smtp-source on the ingress listener."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from mailstream.events.records import AcceptedMessage
from mailstream.events.serde import decode
from mailstream.events.topics import ACCEPTED
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, INGRESS_DOMAIN, GatewayPorts
from tests.infra.postfix import find_postfix_tool
from tests.infra.stack import Stack
from tests.infra.tools import find_swaks, missing
from tests.infra.topics import read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
# swaks marks what it sends and receives, in clear and over TLS, normal and error replies
SMTP_LINES = (" -> ", " ~> ", "**> ", "*~> ", "<-  ", "<~  ", "<** ", "<~* ")
TRANSACTION_ID = re.compile(r"<[-~] +250 2\.0\.0 \w+ as ([0-9a-f]{32})")  # swaks: <- in clear, <~ over TLS


@pytest.fixture(scope="module")
def swaks() -> Path:
    path = find_swaks()
    if path is None:
        missing("swaks not installed (scripts/bootstrap.sh swaks)")
    return path


@pytest.fixture(scope="module")
def smtp_source() -> Path:
    path = find_postfix_tool("smtp-source")
    if path is None:
        missing("Postfix smtp-source not installed (scripts/bootstrap.sh postfix)")
    return path


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize(
    ("listener", "tls", "mechanism"), [("submission", "--tls", "PLAIN"), ("smtps", "--tls-on-connect", "LOGIN")]
)
def test_swaks_pipelining_over_tls_with_auth_is_delivered(
    stack: Stack, gateway: GatewayPorts, sink: CaptureSink, swaks: Path, listener: str, tls: str, mechanism: str
) -> None:
    rcpt = f"swaks-{uuid.uuid4().hex[:8]}@example.com"
    subject = f"swaks {mechanism} {uuid.uuid4().hex[:8]}"
    port = gateway.submission if listener == "submission" else gateway.smtps
    transcript = run(
        [
            str(swaks),
            "--server",
            "127.0.0.1",
            "--port",
            str(port),
            "--ehlo",
            "client.acme.test",
            tls,
            "--tls-verify",
            "--tls-ca-path",
            str(gateway.ca_file),  # the handshake fails unless the cert checks
            "--auth",
            mechanism,
            "--auth-user",
            ACME_USER,
            "--auth-password",
            ACME_PASSWORD,
            "--pipeline",
            "--from",
            "app@acme.test",
            "--to",
            rcpt,
            "--header",
            f"Subject: {subject}",
            "--body",
            "Hello from swaks.",
            "--timeout",
            "60",
        ]
    )
    assert "TLS started" in transcript, transcript
    said = [line[4:] for line in transcript.splitlines() if line[:4] in SMTP_LINES]
    mail = next(i for i, line in enumerate(said) if line.startswith("MAIL FROM:"))
    assert said[mail + 1 : mail + 3] == [f"RCPT TO:<{rcpt}>", "DATA"], transcript  # pipelined: no reply between
    found = TRANSACTION_ID.search(transcript)
    assert found is not None, transcript
    status = stack.wait_status(found[1], {"delivered"})
    assert (status["tenant"], status["sender"], status["recipient"]) == ("acme", "app@acme.test", rcpt)
    [received] = [m for m in sink.messages if rcpt in m.rcpt_tos]
    assert received.message()["Subject"] == subject
    assert "with ESMTPSA" in received.message()["Received"]  # over TLS, authenticated (RFC 3848)


def test_smtp_source_on_the_ingress_listener_is_all_delivered(
    stack: Stack, gateway: GatewayPorts, sink: CaptureSink, smtp_source: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    messages = 6
    # -N puts a sequence number before each recipient: six transactions, three sessions at once
    run(
        [
            str(smtp_source),
            "-s",
            "3",
            "-m",
            str(messages),
            "-N",
            "-f",
            "peer@remote.example",
            "-t",
            f"ss-{tag}@{INGRESS_DOMAIN}",
            "-M",
            "peer.remote.example",
            f"127.0.0.1:{gateway.ingress}",
        ]
    )
    accepted = [
        decode(value, AcceptedMessage)
        for _, _, _, value in read_all(stack.bootstrap, ACCEPTED.name, ACCEPTED.partitions)
        if value
    ]
    mine = {m.id: m.recipient for m in accepted if f"ss-{tag}@" in m.recipient}
    assert len(set(mine.values())) == len(mine) == messages, mine
    for tx, rcpt in mine.items():
        status = stack.wait_status(tx, {"delivered"})
        assert (status["tenant"], status["sender"], status["recipient"]) == ("acme", "peer@remote.example", rcpt)
    assert sorted(r for m in sink.messages for r in m.rcpt_tos if f"ss-{tag}@" in r) == sorted(mine.values())
