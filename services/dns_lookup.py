"""The one seam to dnspython, shared by the delivery worker (where to connect) and stage 2 (which MX site).

Both ask the DNS servers `delivery.nameservers` names (empty: the system's resolvers), so the site a
path is named by and the hosts its connections go to come from the same answers.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from mailstream.config.model import nameserver_address
from mailstream.core.mx_site import MxAnswer


def build_resolver(nameservers: list[str], timeout: float) -> dns.asyncresolver.Resolver:
    """An async resolver asking `nameservers` (none: resolv.conf's), each query ended after `timeout` seconds."""
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*nameserver_address(n)) for n in nameservers]
    resolver.lifetime = timeout
    resolver.cache = dns.resolver.LRUCache()
    return resolver


async def lookup_mx(resolver: dns.asyncresolver.Resolver, domain: str) -> MxAnswer:
    """The domain's MX answer, classified: no MX record means the domain is its own exchanger (RFC 5321
    §5.1), a lone "." exchanger a null MX (RFC 7505); a timeout or SERVFAIL is a failure, never a refusal."""
    try:
        answer = await resolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        return MxAnswer("nxdomain")
    except dns.resolver.NoAnswer:
        return MxAnswer("implicit")
    except dns.exception.DNSException as exc:
        return MxAnswer("failed", error=str(exc) or type(exc).__name__)
    records = tuple((int(r.preference), r.exchange.to_text()) for r in answer)
    ttl = float(answer.rrset.ttl) if answer.rrset is not None else 0.0
    if len(records) == 1 and records[0][1].rstrip(".") == "":
        return MxAnswer("null", ttl=ttl)
    return MxAnswer("ok", records, ttl)
