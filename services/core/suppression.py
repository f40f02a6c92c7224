"""Suppression lists, the pure part: one address form, the entry key, which bounce types suppress and for how
long, and whether an entry is in force at an instant.

An entry is per tenant (None: mail routed without one) and per normalised address. Its key on
mail.suppressions is `<tenant>!<address>`: a tenant never contains `!` (it is part of queue names), so the key
splits back unambiguously.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import idna

KEY_SEPARATOR = "!"
MAX_ADDRESS = 254  # RFC 5321's path limit, less the angle brackets


class InvalidAddress(ValueError):
    """Text that is not a `local@domain` address."""


def normalise(address: str) -> str:
    """The one form of an address an entry is kept and looked up under: no angle brackets or surrounding
    space, lower case (receivers treat local parts case-insensitively in practice; a list that did not would
    let `Bob@` past `bob@`), the domain without a trailing dot and in A-labels (IDNA 2008)."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    local, at, domain = text.rpartition("@")
    domain = domain.rstrip(".").lower()
    if not at or not local or not domain or any(c.isspace() or ord(c) < 32 or c in "<>" for c in text):
        raise InvalidAddress(f"{address!r} is not an address (local@domain)")
    if not domain.isascii():
        try:  # IDNA 2008 (UTS 46), as the MX lookup spells it: Python's "idna" codec (2003) makes straße strasse
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise InvalidAddress(f"{address!r} has a domain that is not a valid IDN") from None
    normal = f"{local.lower()}@{domain}"
    if len(normal) > MAX_ADDRESS:
        raise InvalidAddress(f"{address!r} is longer than {MAX_ADDRESS} characters")
    return normal


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def entry_key(tenant: str | None, address: str) -> str:
    """The key of a tenant's entry for a normalised address."""
    return f"{tenant or ''}{KEY_SEPARATOR}{address}"


def parse_entry_key(key: str) -> tuple[str | None, str]:
    """(tenant, address) of an entry key; ValueError if it is none."""
    tenant, sep, address = key.partition(KEY_SEPARATOR)
    if not sep or not address:
        raise ValueError(f"{key!r} is not '<tenant>!<address>'")
    return tenant or None, address


def in_force(expires_at: datetime | None, now: datetime) -> bool:
    """Whether an entry still applies: it has no expiry, or it has not come yet."""
    return expires_at is None or now < expires_at


@dataclass(frozen=True, slots=True)
class Suppressing:
    """Which bounce types put an address on its tenant's list, each for how long (None: until removed)."""

    lifetimes: Mapping[str, timedelta | None]

    def suppresses(self, bounce_type: str | None) -> bool:
        return bounce_type is not None and bounce_type in self.lifetimes

    def expires_at(self, bounce_type: str, now: datetime) -> datetime | None:
        """When an entry made now for a bounce of this type stops applying (None: never by itself)."""
        lifetime = self.lifetimes[bounce_type]
        return None if lifetime is None else now + lifetime


def matches(address: str, *, search: str | None = None, domain: str | None = None) -> bool:
    """The listing's filters: `search` anywhere in the address (any case), `domain` the whole domain."""
    if search is not None and search.strip().lower() not in address:
        return False
    return domain is None or domain_of(address) == domain.strip().rstrip(".").lower()
