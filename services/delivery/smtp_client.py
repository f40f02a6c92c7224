"""The one seam to aiosmtplib: one message, one recipient, one reply — every failure becomes a reply.

Network and protocol errors are mapped to synthesized replies the way KumoMTA reports
them (`451 4.4.1` for a host that does not answer), so the scheduler sees one shape only.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from mailstream.core.smtp_reply import split_enhanced_code
from mailstream.events.records import SmtpResponse

StartTls = Literal["opportunistic", "required", "disabled"]


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class SmtpAttempt:
    response: SmtpResponse
    peer_address: str | None
    tls: str | None


def _reply(code: int, text: str, command: str) -> SmtpResponse:
    enhanced, content = split_enhanced_code(code, text)
    return SmtpResponse(code=code, enhanced_code=enhanced, content=content, command=command)


def _tls_context() -> ssl.SSLContext:
    # MTA-to-MTA TLS is opportunistic: most MX certificates do not name the MX host (RFC 7435).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def send_one(
    dest: Destination, *, sender: str, recipient: str, data: bytes, ehlo_domain: str,
    source_address: str | None, starttls: StartTls, connect_timeout: float, command_timeout: float,
) -> SmtpAttempt:
    peer = f"{dest.host}:{dest.port}"
    client = aiosmtplib.SMTP(
        hostname=dest.host, port=dest.port, local_hostname=ehlo_domain, timeout=command_timeout,
        source_address=(source_address, 0) if source_address else None, start_tls=False,
        tls_context=_tls_context())
    command = "CONNECT"
    try:
        await client.connect(timeout=connect_timeout)
        command = "EHLO"
        await client.ehlo()
        tls = None
        if starttls != "disabled" and client.supports_extension("starttls"):
            command = "STARTTLS"
            await client.starttls()
            tls = "TLS"
        elif starttls == "required":
            return SmtpAttempt(SmtpResponse(code=451, enhanced_code="4.7.5", command="STARTTLS",
                               content="mailstream: TLS is required but the peer does not offer STARTTLS"),
                               peer, None)
        command = "MAIL"
        await client.mail(sender)
        command = "RCPT"
        await client.rcpt(recipient)
        command = "DATA"
        reply = await client.data(data)
        return SmtpAttempt(_reply(reply.code, reply.message, "DATA"), peer, tls)
    except aiosmtplib.SMTPResponseException as exc:
        return SmtpAttempt(_reply(exc.code, exc.message, command), peer, None)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        what = "timed out" if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError) else str(exc)
        return SmtpAttempt(SmtpResponse(code=451, enhanced_code="4.4.1", command=command,
                           content=f"mailstream: {command} to {peer} failed: {what}"), None, None)
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
