"""The addresses to connect to for a domain, in MX order; failures become replies (dnspython via
`mailstream.dns_lookup`, which stage 2's MX sites share).

No MX record means the domain itself is the exchanger (RFC 5321 §5.1); a null MX refuses mail
(RFC 7505). A domain that does not exist, or has neither MX nor address, is a permanent failure; a
DNS server that does not answer (timeout, SERVFAIL), for the MX or for an address, a transient one.
"""

from __future__ import annotations

import random

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailstream.core.mx_plan import order_exchangers
from mailstream.delivery.smtp_client import Destination
from mailstream.dns_lookup import build_resolver, lookup_mx
from mailstream.events.records import SmtpResponse
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


def _refusal(code: int, enhanced: str, content: str) -> SmtpResponse:
    return SmtpResponse(code=code, enhanced_code=enhanced, content=f"mailstream: {content}", command="MX")


class MxResolver:
    def __init__(
        self, nameservers: list[str], smtp_port: int, *, timeout: float = 10.0, rng: random.Random | None = None
    ) -> None:
        self._nameservers = nameservers
        self._timeout = timeout
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._port = smtp_port
        self._rng = rng or random.Random()

    def _ready(self) -> dns.asyncresolver.Resolver:
        """Built on first use: a worker that only relays needs no resolv.conf."""
        if self._resolver is None:
            self._resolver = build_resolver(self._nameservers, self._timeout)
        return self._resolver

    async def hosts(self, domain: str) -> list[Destination] | SmtpResponse:
        answer = await lookup_mx(self._ready(), domain)
        if answer.status == "nxdomain":
            return _refusal(550, "5.1.2", f"domain {domain} does not exist")
        if answer.status == "failed":
            return _refusal(451, "4.4.3", f"MX lookup for {domain} failed: {answer.error}")
        exchangers = (domain,) if answer.status == "implicit" else order_exchangers(answer.records, self._rng)
        if answer.status == "null" or exchangers is None:
            return _refusal(556, "5.1.10", f"domain {domain} accepts no mail (null MX)")
        found: list[Destination] = []
        unanswered: list[str] = []  # hosts whose address lookup failed, not just came back empty
        for host in exchangers:
            addresses = await self._addresses(host)
            if addresses is None:
                unanswered.append(host)
                continue
            found += [Destination(a, self._port, host.rstrip(".")) for a in addresses]
        if found:
            return found
        if unanswered:  # the address may be there once the DNS server answers: never bounce on a timeout
            return _refusal(451, "4.4.3", f"address lookup of {', '.join(unanswered)} failed")
        if exchangers == (domain,):
            return _refusal(550, "5.1.2", f"domain {domain} has no MX and no address")
        return _refusal(451, "4.4.4", f"no MX host of {domain} resolves to an address")

    async def txt(self, name: str) -> list[str] | None:
        """The TXT strings of `name` (each record's strings joined), [] when it has none; None if the lookup
        failed (timeout, SERVFAIL)."""
        try:
            answer = await self._ready().resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            log.warning("txt_lookup_failed", name=name, error=str(exc))
            return None
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    async def addresses(self, host: str) -> list[str] | None:
        """The host's A and AAAA answers, as for an exchanger; None if a lookup failed and none answered."""
        return await self._addresses(host)

    async def _addresses(self, host: str) -> list[str] | None:
        """The host's A and AAAA answers; None if a lookup failed (timeout, SERVFAIL) and none answered.
        Only NXDOMAIN and an empty answer mean the host has no address of that type."""
        found: list[str] = []
        failed = False
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.to_text() for r in await self._ready().resolve(host, rdtype)]
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                log.warning("address_lookup_failed", host=host, rdtype=rdtype, error=str(exc))
                failed = True
        return None if failed and not found else found
