"""A real MTA relaying into the gateway, as a mail administrator would point one at mailstream: a private
Postfix on loopback whose relayhost is the gateway's STARTTLS submission listener, authenticating with SASL
from a postmap'd sasl_passwd and refusing to send in clear. smtp-source feeds its smtpd; every message ends
delivered at the sink, and the id in Postfix's log ("status=sent (250 2.0.0 ... as <id>)") is the
transaction the API reports."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.gateway import ACME_PASSWORD, ACME_USER, GatewayPorts
from tests.infra.postfix import find_postfix_tool
from tests.infra.postfix_mta import PostfixMta, unavailable_reason
from tests.infra.stack import Stack
from tests.infra.tools import missing

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def relay(stack: Stack, gateway: GatewayPorts) -> Iterator[PostfixMta]:
    reason = unavailable_reason()
    if reason is not None:
        missing(f"no private Postfix: {reason}")
    postmap = shutil.which("postmap") or "/usr/sbin/postmap"
    # Not under pytest's mode-700 temp folder: Postfix's daemons run as the postfix user and must reach it.
    root = Path(tempfile.mkdtemp(prefix="mailstream-relay-"))
    secrets = root / "sasl"
    secrets.mkdir()
    relayhost = f"[127.0.0.1]:{gateway.submission}"
    passwords = secrets / "sasl_passwd"
    passwords.write_text(f"{relayhost} {ACME_USER}:{ACME_PASSWORD}\n")
    passwords.chmod(0o600)  # smtp opens the map as root, before it drops privileges
    ca_file = secrets / "ca.pem"
    shutil.copy(gateway.ca_file, ca_file)
    ca_file.chmod(0o644)
    mta = PostfixMta(
        root,
        ("127.0.0.1", gateway.submission),
        settings={
            "smtp_sasl_auth_enable": "yes",
            "smtp_sasl_password_maps": f"hash:{passwords}",
            # PLAIN and LOGIN are fine once TLS is up (the defaults refuse plaintext mechanisms even then)
            "smtp_sasl_security_options": "noanonymous",
            "smtp_sasl_tls_security_options": "noanonymous",
            "smtp_tls_security_level": "encrypt",  # never in clear: no STARTTLS, no delivery
            "smtp_tls_CAfile": str(ca_file),
            "smtp_tls_loglevel": "1",  # logs whether the certificate checked against the CA ("Trusted")
        },
    )
    try:
        mta.start()
        # postmap reads the instance's main.cf; the map is opened by the first smtp client, after this
        subprocess.run([postmap, "-c", str(mta.etc), f"hash:{passwords}"], check=True, capture_output=True, timeout=30)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        mta.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"{exc}\n{getattr(exc, 'stderr', '')}", pytrace=False)
    try:
        yield mta
    finally:
        mta.stop()
        shutil.rmtree(root, ignore_errors=True)


def sent_ids(mta: PostfixMta, recipient: str, count: int, timeout: float = 60.0) -> list[str]:
    """The transaction ids the gateway named in its DATA replies to Postfix, once `count` are logged sent."""
    sent = re.compile(
        rf"to=<{re.escape(recipient)}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.* status=sent "
        r"\(250 2\.0\.0 \w+ as ([0-9a-f]{32})\)"
    )
    deadline = time.monotonic() + timeout
    while len(found := sent.findall(mta.log_text())) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} logged sent in {timeout}s:\n{mta.log_tail(30)}")
        time.sleep(0.2)
    return found


def test_a_postfix_relay_with_starttls_and_sasl_delivers_end_to_end(
    stack: Stack, gateway: GatewayPorts, sink: CaptureSink, relay: PostfixMta
) -> None:
    source = find_postfix_tool("smtp-source")
    if source is None:
        missing("Postfix smtp-source not installed (scripts/bootstrap.sh postfix)")
    rcpt = f"relayed-{uuid.uuid4().hex[:8]}@example.com"
    messages = 3
    subprocess.run(
        [
            str(source),
            "-s",
            "2",
            "-m",
            str(messages),
            "-f",
            "app@acme.test",
            "-t",
            rcpt,
            "-M",
            "app.acme.test",
            f"127.0.0.1:{relay.port}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ids = sent_ids(relay, rcpt, messages)
    assert len(set(ids)) == messages
    for tx in ids:
        status = stack.wait_status(tx, {"delivered"})
        assert (status["tenant"], status["sender"], status["recipient"]) == ("acme", "app@acme.test", rcpt)
    log = relay.log_text()
    assert f"Trusted TLS connection established to 127.0.0.1[127.0.0.1]:{gateway.submission}" in log
    received = [m.message() for m in sink.messages if rcpt in m.rcpt_tos]
    assert len(received) == messages
    for message in received:
        trace = message.get_all("Received") or []
        assert "by gateway.mailstream.test (mailstream) with ESMTPSA" in trace[0]  # authenticated, over TLS
        assert "by postfix.bench.test (Postfix)" in trace[1]
