"""What a tenant's keys and users may ask for (pure): the sender domains its mail may use, and the steering
metadata (`routing_domain`, `queue`) it may set. Both doors ask here, so one setting (`tenants.<t>`) governs the
HTTP API and SMTP submission alike."""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from ipaddress import ip_address
from typing import Any

import idna

from mailstream.config.tenants import TenantRights
from mailstream.core.queue_name import NULL_QUEUE, QueueName, QueueNameError

UNRESTRICTED = TenantRights()


def address_domain(address: str) -> str:
    """The domain of `local@domain`, lower-case ASCII (A-labels; "" when there is none), as `sender_domains`
    spells domains."""
    domain = address.rpartition("@")[2].strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode()
    except idna.IDNAError:
        return domain  # matches no configured domain, which are ASCII


def domain_allowed(domain: str, allowed: Iterable[str]) -> bool:
    """Empty `allowed`: any domain."""
    allowed = list(allowed)
    return not allowed or domain in allowed


def header_addresses(value: str) -> list[str]:
    """The addresses of a From (or any address-list) header's value; names and groups dropped."""
    return [addr for _, addr in email.utils.getaddresses([value]) if addr]


class TenantPolicies:
    def __init__(self, tenants: Mapping[str, TenantRights] | None = None) -> None:
        self._tenants = dict(tenants or {})

    def rights(self, tenant: str | None) -> TenantRights:
        return self._tenants.get(tenant, UNRESTRICTED) if tenant is not None else UNRESTRICTED

    def sender_refusal(self, tenant: str, address: str, *, header: str | None = None) -> str | None:
        """Why `tenant` may not send as `address` (the envelope sender, or an address of `header`), or None."""
        allowed = self.rights(tenant).sender_domains
        if domain_allowed(address_domain(address), allowed):
            return None
        where = f"{header}: " if header else ""
        return f"{where}tenant {tenant!r} may not send as <{address}> (its sender domains: {', '.join(allowed)})"

    def from_refusal(self, tenant: str, from_header: str | None) -> str | None:
        """Why `tenant` may not send a message with this From header, or None (no header: nothing to check)."""
        for address in header_addresses(from_header or ""):
            refused = self.sender_refusal(tenant, address, header="From")
            if refused is not None:
                return refused
        return None

    def steering_refusals(self, tenant: str, meta: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(metadata key, why) for each steering key in `meta` that `tenant`'s keys may not set. Values that are
        not strings are left to the routing checks, which refuse them anyway."""
        rights = self.rights(tenant)
        out = []
        routing_domain = meta.get("routing_domain")
        if isinstance(routing_domain, str) and routing_domain:
            why = _routing_domain_refusal(tenant, rights, routing_domain)
            if why is not None:
                out.append(("routing_domain", why))
        queue = meta.get("queue")
        if isinstance(queue, str) and queue:
            why = _queue_refusal(tenant, rights, queue)
            if why is not None:
                out.append(("queue", why))
        return out


def _matches(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(value, pattern.lower()) for pattern in patterns)


def _routing_domain_refusal(tenant: str, rights: TenantRights, routing_domain: str) -> str | None:
    if not rights.routing_domains:
        return (
            f"tenant {tenant!r} may not set a routing domain (only an admin key, or tenants.{tenant}.routing_domains)"
        )
    if not _matches(routing_domain.lower().rstrip("."), rights.routing_domains):
        return f"tenant {tenant!r} may not route via {routing_domain!r} (not in tenants.{tenant}.routing_domains)"
    return None


def _queue_refusal(tenant: str, rights: TenantRights, queue: str) -> str | None:
    if not rights.queues:
        return f"tenant {tenant!r} may not name a queue (only an admin key, or tenants.{tenant}.queues)"
    if not _matches(queue, rights.queues):
        return f"tenant {tenant!r} may not use queue {queue!r} (not in tenants.{tenant}.queues)"
    if queue == NULL_QUEUE:
        return None
    try:
        parsed = QueueName.parse(queue)
    except QueueNameError:
        parsed = None
    if parsed is None or parsed.tenant != tenant:
        return f"queue {queue!r} does not belong to tenant {tenant!r} (its queues are [campaign:]{tenant}@domain)"
    if parsed.routing_domain is not None:
        return _routing_domain_refusal(tenant, rights, parsed.routing_domain)
    return None


def loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def unrestricted_senders(policies: TenantPolicies, tenants: Iterable[str]) -> list[str]:
    """Those of `tenants` that may send as any domain: a door listening beyond loopback warns of them."""
    return sorted({t for t in tenants if not policies.rights(t).sender_domains})
