"""The `dkim` section: signing keys per domain (and optionally per tenant), and what gets signed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mailstream.config.scheduling import Section

# RFC 6376 5.4.1's recommended set; each is also oversigned by default, so no one can add a second one.
DEFAULT_HEADERS = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
]


class DkimKey(Section):
    """One signing key; a message gets one signature per key that matches its From domain."""

    domain: str = Field(
        min_length=1,
        description="The signing domain (`d=`); the key signs mail whose From header's domain is this one.",
    )
    selector: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The selector (`s=`): the public key is at `<selector>._domainkey.<domain>`.",
    )
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = Field(
        "rsa-sha256",
        description="`ed25519-sha256` (RFC 8463) costs ~0.2 ms a message, `rsa-sha256` ~8 ms "
        "(dkimpy's RSA is pure Python): sign with both during a migration, as receivers differ.",
    )
    key_file: Path = Field(
        description="Private key: PEM (RSA) or the base64 seed dkimpy's `dknewkey` writes "
        "(ed25519). A missing or unreadable file stops the service at start-up."
    )
    tenant: str | None = Field(
        None,
        description="Only for this tenant's mail; a tenant's own keys for a domain "
        "replace the keys without a tenant for it.",
    )


class DkimConfig(Section):
    """What ingest and the gateway sign, once per body, before it is written."""

    keys: list[DkimKey] = Field([], description="The signing keys; none: nothing is signed.")
    headers: list[str] = Field(
        list(DEFAULT_HEADERS), description="Header fields signed when the message has them (`h=`)."
    )
    oversign: list[str] = Field(
        list(DEFAULT_HEADERS),
        description="Header fields also signed once more than they occur, so that adding one breaks the signature.",
    )

    @model_validator(mode="after")
    def _unique(self) -> DkimConfig:
        seen = set()
        for key in self.keys:
            named = (key.domain.lower(), key.selector, key.tenant)
            if named in seen:
                raise ValueError(f"dkim key {key.selector}._domainkey.{key.domain} appears twice")
            seen.add(named)
        return self
