"""Which scheduled queues an admin operation covers: every queue matching all the fields given.

A scope is a value users type (`{"tenant": "acme", "campaign": "spring"}`); its `key` names it
stably, so suspending the same scope twice replaces the first suspension and resuming it names it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

FIELDS = ("queue", "tenant", "campaign", "domain")


@dataclass(frozen=True, slots=True)
class QueueScope:
    queue: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    domain: str | None = None  # the recipient domain

    def __post_init__(self) -> None:
        if all(getattr(self, f) is None for f in FIELDS):
            raise ValueError(f"a queue scope names at least one of {', '.join(FIELDS)}")
        for f in FIELDS:
            value = getattr(self, f)
            if value is not None and (not value or value != value.strip()):
                raise ValueError(f"{f} {value!r} must be a non-empty name without surrounding spaces")

    def matches(self, queue: str, tenant: str | None, campaign: str | None, domain: str) -> bool:
        return (
            (self.queue is None or self.queue == queue)
            and (self.tenant is None or self.tenant == tenant)
            and (self.campaign is None or self.campaign == campaign)
            and (self.domain is None or self.domain == domain.lower())
        )

    @property
    def key(self) -> str:
        return json.dumps(
            {k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True, separators=(",", ":")
        )

    @classmethod
    def from_key(cls, key: str) -> QueueScope:
        return cls(**json.loads(key))
