"""Where the services may connect: `delivery.outbound` (SMTP) and `webhooks.outbound` (HTTP), each checked by
`mailstream.core.address_policy`."""

from __future__ import annotations

from ipaddress import ip_network

from pydantic import Field, field_validator

from mailstream.config.scheduling import Section
from mailstream.core.address_policy import AddressPolicy, parse_endpoint


class OutboundPolicy(Section):
    """Every address connected to is checked against this before connecting; a denied one is skipped."""

    deny_special: bool = Field(
        True,
        description="Deny every address that is not public unicast: loopback, private (RFC 1918, fc00::/7), "
        "link-local (so cloud metadata services), multicast, unspecified, and reserved or documentation ranges. "
        "Turn it off only where `deny` lists what must not be reached.",
    )
    deny: list[str] = Field(
        [], description="Further networks to deny (`203.0.113.0/24`, `2001:db8::/32`), public ones included."
    )
    allow: list[str] = Field(
        [],
        description="Networks (`10.20.0.0/16`, `192.0.2.7`) or single endpoints (`127.0.0.1:2525`, `[::1]:25`) "
        "allowed whatever the two above say: the operator's own relays, sinks and webhook receivers. The local "
        "stack lists its capture sink here.",
    )

    @field_validator("deny")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ip_network(entry, strict=True)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not a network ({exc})") from None
        return value

    @field_validator("allow")
    @classmethod
    def _entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_endpoint(entry)
        return value

    def policy(self) -> AddressPolicy:
        return AddressPolicy.of(self.deny_special, self.deny, self.allow)
