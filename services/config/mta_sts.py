"""`delivery.mta_sts`: whether the delivery workers honour recipient domains' MTA-STS policies (RFC 8461)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from mailstream.config.scheduling import TCP_PORT, Port, PositiveDuration, Section


class MtaStsConfig(Section):
    """MTA-STS for mail to MX hosts (not relays or the smarthost): the `_mta-sts` TXT record looked up through
    `delivery.nameservers`, the policy fetched from `https://mta-sts.<domain>/.well-known/mta-sts.txt` over
    verified TLS (`delivery.tls_ca_file`, else the system's CAs), its address checked by `delivery.outbound`,
    and cached for its `max_age` and TXT id. `enforce`: only MX hosts the policy names, over STARTTLS with a
    certificate verified against the MX name; `testing`: violations logged and counted, mail delivered."""

    enabled: bool = Field(False, description="Look up and apply recipient domains' MTA-STS policies.")
    https_port: Port = Field(
        443,
        description="Port the policy is fetched from (tests serve it elsewhere).",
        json_schema_extra=TCP_PORT,
    )
    fetch_timeout: PositiveDuration = Field(
        timedelta(seconds=10), description="How long looking up and fetching one policy may take."
    )
    max_policy_size: int = Field(
        65_536,
        ge=1024,
        le=1_048_576,
        description="Largest policy file read; a larger one is no policy.",
        json_schema_extra={"unit": "bytes"},
    )
