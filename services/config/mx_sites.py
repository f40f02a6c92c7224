"""`scheduler.mx_sites`: stage 2 names MX-delivered egress paths by the routing domain's MX host set."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, model_validator

from mailstream.config.scheduling import PositiveDuration, Section
from mailstream.core.mx_site import CacheTimes


class MxSitesConfig(Section):
    """KumoMTA's `site_name`: the egress path of mail delivered by MX is `source-><site>`, the site named after the
    routing domain's MX hosts (`(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com`), so every domain on one
    provider's MX shares the path's `max_message_rate` (stage 2) and connection shaping (the delivery worker).
    Stage 2 looks the MX up through `delivery.nameservers`, before each batch's transaction, each distinct
    domain once, cached for the answer's TTL. A domain whose lookup fails, times out, is NXDOMAIN or has a null
    MX keeps its own name as site: the delivery worker resolves it again and defers or bounces it. Paths to a
    relay or the smarthost are named by it, with no lookup."""

    enabled: bool = Field(True, description="Name MX-delivered paths by MX site; off: by the routing domain.")
    lookup_timeout: PositiveDuration = Field(
        timedelta(seconds=3),
        description="How long one batch's MX lookups may take altogether (they run at once); a domain unanswered "
        "by then keeps its own name as site until `failure_ttl` has passed.",
    )
    min_ttl: PositiveDuration = Field(
        timedelta(seconds=30), description="An answer is reused at least this long, whatever its DNS TTL."
    )
    max_ttl: PositiveDuration = Field(
        timedelta(hours=1), description="An answer is reused at most this long, whatever its DNS TTL."
    )
    negative_ttl: PositiveDuration = Field(
        timedelta(minutes=5), description="How long NXDOMAIN or a null MX is reused before the domain is asked again."
    )
    failure_ttl: PositiveDuration = Field(
        timedelta(minutes=1),
        description="How long after a failed lookup (timeout, SERVFAIL) the domain is asked again; meanwhile it "
        "keeps the site it had, else its own name.",
    )
    max_lookups_per_batch: Annotated[int, Field(ge=1, le=10_000)] = Field(
        256,
        description="Distinct domains looked up before one batch; more wait for the next batch (their mail meanwhile "
        "named by the domain).",
        json_schema_extra={"unit": "lookups"},
    )
    cache_size: Annotated[int, Field(ge=100, le=10_000_000)] = Field(
        100_000,
        description="Domains whose site one scheduler worker remembers (least recently used forgotten first).",
        json_schema_extra={"unit": "domains"},
    )

    @model_validator(mode="after")
    def _ttl_range(self) -> MxSitesConfig:
        if self.min_ttl > self.max_ttl:
            raise ValueError("mx_sites.min_ttl must not exceed max_ttl")
        return self

    def cache_times(self) -> CacheTimes:
        return CacheTimes(self.min_ttl, self.max_ttl, self.negative_ttl, self.failure_ttl)
