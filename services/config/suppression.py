"""Configuration of suppression lists: which bounce types put an address on its tenant's list, and for how long.

Read by the scheduler's first stage, which decides every bounce of a tenant's mail and so adds the entry in
the same transaction as the bounce. How entries are applied and removed: docs/suppression.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from mailstream.config.scheduling import Section
from mailstream.core.bounce_classify import BounceType
from mailstream.core.duration import parse_duration
from mailstream.core.suppression import Suppressing

FOREVER = "forever"


def _lifetime(value: Any) -> str:
    """`forever` (or null), or a duration greater than zero; kept as written, parsed by `lifetime`."""
    if value is None or value == FOREVER:
        return FOREVER
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r}: expected 'forever' or a duration such as '30d'")
    if parse_duration(value) <= timedelta(0):
        raise ValueError(f"duration {value!r} must be positive")
    return str(value)


def lifetime(text: str | int | float) -> timedelta | None:
    """None for `forever`, else the duration (ValueError naming bad text)."""
    return None if text == FOREVER else parse_duration(text)


Lifetime = Annotated[str, BeforeValidator(_lifetime)]
_ON_BOUNCE = (
    "Bounce type (`hard`, `soft`, `block`, `complaint`, `unknown`, as `mailstream.core.bounce_classify` types a "
    "response) -> how long the recipient stays on its tenant's suppression list: `forever` (until removed by the "
    "API) or a duration. A type not named does not suppress."
)


class TenantSuppression(Section):
    """A tenant's own rules, replacing `suppression.on_bounce` for its mail (not merged with it)."""

    on_bounce: dict[BounceType, Lifetime] = Field(description=_ON_BOUNCE)


class SuppressionConfig(Section):
    """Suppression lists, one per tenant: kept by the scheduler's first stage, applied at submission by ingest
    (`failed_recipients`) and the SMTP gateway (`550 5.1.1` at RCPT)."""

    on_bounce: dict[BounceType, Lifetime] = Field(
        {"hard": FOREVER, "complaint": FOREVER}, description=_ON_BOUNCE + " Default: hard bounces and complaints."
    )
    tenants: dict[str, TenantSuppression] = Field({}, description="By tenant name: rules replacing `on_bounce`.")

    def rules(self, tenant: str | None) -> Suppressing:
        own = self.tenants.get(tenant) if tenant else None
        return _rules(own.on_bounce if own else self.on_bounce)


def _rules(on_bounce: Mapping[BounceType, str]) -> Suppressing:
    return Suppressing({kind: lifetime(text) for kind, text in on_bounce.items()})
