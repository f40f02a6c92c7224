"""Where a connection may go: a route's hosts resolved to addresses, each checked against `delivery.outbound`
(`mailstream.core.address_policy`) before anything connects. A denied address is skipped and counted.

When every address is denied the attempt ends without connecting. For the MX hosts of a domain (the
recipient's, or a `routing_domain`) that is permanent, `550 5.7.1`, a policy bounce: whoever runs that
DNS pointed the domain at an address this MTA will not reach, and retrying changes nothing. For a relay
or the smarthost it is `451 4.7.1`: the operator configured it, so the allow list is missing an entry,
and the mail waits for the fix instead of bouncing.
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_address

from prometheus_client import Counter

from mailstream.core.address_policy import AddressPolicy
from mailstream.delivery.mx import MxResolver
from mailstream.delivery.routes import Route
from mailstream.delivery.smtp_client import Destination
from mailstream.events.records import SmtpResponse
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
DENIED = Counter(
    "mailstream_delivery_denied_addresses_total",
    "Addresses not connected to because delivery.outbound denies them, by where they came from",
    ["via"],  # mx | relay (a source's relay or the smarthost)
)


def _refusal(code: int, enhanced: str, content: str) -> SmtpResponse:
    return SmtpResponse(code=code, enhanced_code=enhanced, content=f"mailstream: {content}", command="CONNECT")


async def _resolved(dest: Destination) -> list[Destination] | SmtpResponse:
    """A configured host's addresses (the system's resolver, so /etc/hosts counts); an address as it is."""
    try:
        ip_address(dest.host)
        return [dest]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(dest.host, dest.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return _refusal(451, "4.4.3", f"relay host {dest.host} does not resolve: {exc}")
    addresses = dict.fromkeys(str(info[4][0]) for info in infos)  # each once, in the resolver's order
    return [Destination(a, dest.port, dest.host) for a in addresses]


class Outbound:
    def __init__(self, policy: AddressPolicy, mx: MxResolver) -> None:
        self._policy = policy
        self._mx = mx

    async def destinations(self, route: Route) -> list[Destination] | SmtpResponse:
        """The addresses to try in order, all allowed; or the reply that ends the attempt."""
        found: list[Destination] = []
        if route.hosts:
            for host in route.hosts:
                resolved = await _resolved(host)
                if isinstance(resolved, SmtpResponse):
                    return resolved
                found += resolved
        else:
            mx = await self._mx.hosts(route.domain)
            if isinstance(mx, SmtpResponse):
                return mx
            found = mx
        via = "relay" if route.hosts else "mx"
        allowed: list[Destination] = []
        denied: list[str] = []
        for dest in found:
            why = self._policy.refusal(dest.host, dest.port)
            if why is None:
                allowed.append(dest)
                continue
            DENIED.labels(via).inc()
            denied.append(f"{dest.host} ({why})")
            log.warning("address_denied", via=via, host=dest.name, address=dest.host, port=dest.port, reason=why)
        if allowed or not denied:
            return allowed
        listed = ", ".join(denied)
        if via == "mx":
            return _refusal(550, "5.7.1", f"destination address {listed} of {route.domain} denied by policy")
        return _refusal(451, "4.7.1", f"relay address {listed} denied by policy: allow it in delivery.outbound.allow")
