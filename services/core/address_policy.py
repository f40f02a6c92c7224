"""Which addresses the delivery workers may connect to: a deny list with an allow list over it. Pure.

MX answers come from whoever runs the recipient's DNS and `routing_domain` from a tenant, so without a
check the worker connects wherever they point it (loopback, the cluster's private network, a cloud's
metadata service). By default every address that is not globally routable is denied; the operator
names the networks (or single `address:port` endpoints) their own relays and sinks live on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")  # hex, octal, decimal
# Labelled apart from the rest of what `is_global` excludes, since an operator recognises them by name.
_PRIVATE = tuple(ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def special_kind(address: Address) -> str | None:
    """Why `address` is not a public unicast address ("loopback", "private", ...); None if it is one."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", any(address in n for n in _PRIVATE if n.version == address.version)),
        ("reserved", address.is_reserved or not address.is_global),  # documentation, CGNAT, benchmarking, ...
    )
    return next((kind for kind, hit in checks if hit), None)


def literal_address(host: str) -> Address | None:
    """The address a host written as one stands for, the legacy IPv4 forms too ("127.1", "0x7f.1", "2130706433":
    what inet_aton, so a resolver, makes of them); None for a name, which only resolving tells."""
    try:
        return ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    numbers = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if p[:1] == "0" else int(p) for p in parts]
    *head, last = numbers  # the last part fills the bytes the others leave
    if any(not 0 <= n <= 255 for n in head) or not 0 <= last < 256 ** (5 - len(parts)):
        return None
    value = last
    for position, n in enumerate(head):
        value |= n << (24 - 8 * position)
    return IPv4Address(value)


def parse_endpoint(text: str) -> tuple[Address, int] | Network:
    """An allow-list entry: a network ("10.1.0.0/16", "127.0.0.1": a /32) or an endpoint ("127.0.0.1:2525",
    "[::1]:25"); ValueError says what is wrong."""
    host, port = text, ""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: write an IPv6 endpoint as [address]:port")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not port:
        try:
            return ip_network(host, strict=True)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a network, an address or address:port ({exc})") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} has a bad port")
    try:
        return ip_address(host), int(port)
    except ValueError:
        raise ValueError(f"{text!r}: an endpoint's host must be an IP address") from None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    deny_special: bool = True  # deny what `special_kind` names
    deny: tuple[Network, ...] = ()
    allow: tuple[Network, ...] = ()  # overrides both
    allow_endpoints: frozenset[tuple[Address, int]] = frozenset()  # overrides both, for one port only

    @classmethod
    def of(cls, deny_special: bool, deny: Iterable[str], allow: Iterable[str]) -> AddressPolicy:
        networks: list[Network] = []
        endpoints: set[tuple[Address, int]] = set()
        for entry in allow:
            parsed = parse_endpoint(entry)
            if isinstance(parsed, tuple):
                endpoints.add(parsed)
            else:
                networks.append(parsed)
        return cls(deny_special, tuple(ip_network(n, strict=True) for n in deny), tuple(networks), frozenset(endpoints))

    def refusal(self, address: str, port: int) -> str | None:
        """None if a connection to `address`:`port` is allowed; else why not, for the reply and the log."""
        try:
            ip = ip_address(address)
        except ValueError:
            return f"{address!r} is not an IP address"
        # ::ffff:10.0.0.1 reaches 10.0.0.1: held to the IPv4 entries as well as to those written in mapped form
        forms = (ip, ip.ipv4_mapped) if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None else (ip,)
        for a in forms:
            if (a, port) in self.allow_endpoints or any(a in n for n in self.allow if n.version == a.version):
                return None
        listed = next((n for a in forms for n in self.deny if n.version == a.version and a in n), None)
        if listed is not None:
            return f"in denied network {listed}"
        kind = special_kind(ip) if self.deny_special else None
        return None if kind is None else f"{kind} address"
