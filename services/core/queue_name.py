"""Scheduled queue names, `campaign:tenant@domain!routing_domain`, as KumoMTA forms them.

| tenant | campaign | routing_domain | name                                  |
|--------|----------|----------------|---------------------------------------|
| yes    | yes      | no             | campaign:tenant@domain                |
| yes    | yes      | yes            | campaign:tenant@domain!routing_domain |
| yes    | no       | no             | tenant@domain                         |
| yes    | no       | yes            | tenant@domain!routing_domain          |
| no     | yes      | no             | campaign:@domain                      |
| no     | yes      | yes            | campaign:@domain!routing_domain       |
| no     | no       | no             | domain                                |
| no     | no       | yes            | domain!routing_domain                 |

An explicit queue name wins over all of these; `null` is the queue that discards.
"""

from __future__ import annotations

from dataclasses import dataclass

NULL_QUEUE = "null"
_FORBIDDEN = {"campaign": ":@!", "tenant": ":@!", "domain": ":@!", "routing_domain": ":@!"}


class QueueNameError(ValueError):
    """A component that cannot be part of a queue name."""


@dataclass(frozen=True, slots=True)
class QueueName:
    domain: str
    tenant: str | None = None
    campaign: str | None = None
    routing_domain: str | None = None

    def __post_init__(self) -> None:
        for field, bad in _FORBIDDEN.items():
            value = getattr(self, field)
            if value is None:
                continue
            if value == "" or any(c in value for c in bad) or any(c.isspace() for c in value):
                raise QueueNameError(f"{field} {value!r} cannot be part of a queue name")

    def __str__(self) -> str:
        name = self.domain
        if self.tenant is not None or self.campaign is not None:
            name = f"{self.tenant or ''}@{name}"
        if self.campaign is not None:
            name = f"{self.campaign}:{name}"
        if self.routing_domain is not None:
            name = f"{name}!{self.routing_domain}"
        return name

    @classmethod
    def parse(cls, name: str) -> QueueName:
        rest, bang, routing = name.partition("!")
        campaign: str | None = None
        tenant: str | None = None
        if ":" in rest:
            campaign, rest = rest.split(":", 1)
        if "@" in rest:
            tenant_part, rest = rest.split("@", 1)
            tenant = tenant_part or None
        elif campaign is not None:
            raise QueueNameError(f"{name!r}: a campaign needs the '@' that separates the tenant")
        return cls(domain=rest, tenant=tenant, campaign=campaign, routing_domain=routing if bang else None)


def scheduled_queue(
    domain: str,
    *,
    tenant: str | None = None,
    campaign: str | None = None,
    routing_domain: str | None = None,
    explicit: str | None = None,
) -> str:
    """The queue a message joins: the explicit name if set, else the name built from its meta."""
    if explicit:
        return explicit
    return str(
        QueueName(
            domain=domain.lower(),
            tenant=tenant or None,
            campaign=campaign or None,
            routing_domain=routing_domain.lower() if routing_domain else None,
        )
    )
