"""A tenant's entry under `tenants`: its limits (read by the scheduler) and what its API keys and SMTP users may
ask for (read by both doors, through `mailstream.intake.tenant_policy`)."""

from __future__ import annotations

from pydantic import Field

from mailstream.config.gateway import DomainName
from mailstream.config.scheduling import Section, TenantLimits


class TenantRights(Section):
    """What a tenant's keys and users may ask for. Admin keys, and the gateway's own configuration (an ingress
    domain's `routing_domain`), are not held to it."""

    sender_domains: list[DomainName] = Field(
        [],
        description="Domains the tenant's mail may be sent from — the envelope sender's and every `From:` "
        "address's — over the HTTP API and SMTP submission (403 naming the field; 550 5.7.1). Exact domains, "
        "subdomains need their own entry. Empty: any (ingest and the gateway warn at start-up when they listen "
        "beyond loopback).",
    )
    routing_domains: list[str] = Field(
        [],
        description="Values the tenant's keys may give `metadata.routing_domain` (deliver via another domain's "
        "MX), each a domain or a pattern (`*.relay.acme.example`, `*` for any). Empty: none — only an admin key "
        "may set it; otherwise the request is answered 403 naming the field.",
    )
    queues: list[str] = Field(
        [],
        description="Scheduled queues the tenant's keys may name in `metadata.queue`, each a name or a pattern "
        "(`bulk:acme@*`). A named queue must also be the tenant's own whatever this says: "
        "`[campaign:]<tenant>@domain[!routing_domain]` (its routing domain allowed by `routing_domains`), or "
        "`null`. Empty: none — only an admin key may name a queue; otherwise 403 naming the field.",
    )


class TenantConfig(TenantLimits, TenantRights):
    """Limits over all of a tenant's queues (owned by one scheduler partition, the tenant's), and what its keys
    and users may ask for."""
