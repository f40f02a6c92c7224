"""Configuration of adaptive shaping: rules that match delivery replies and act on a path or queues for a time.

Read by the scheduler's first stage (which sees every reply of a tenant's mail and matches them) and applied
where the thing acted on is owned: an egress path by stage 2 (suspension, message rate) and the delivery worker
(connection limit), a tenant's or campaign's scheduled queues by stage 1. How it flows: docs/design-decisions.md.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from mailstream.config.scheduling import Count, PositiveDuration, Section, Throttle
from mailstream.core.shaping import Rule, ShapingAction, Threshold

MAX_DURATION = timedelta(days=366)


def _trigger(value: Any) -> Threshold | None:
    if value is None or value == "immediate" or isinstance(value, Threshold):
        return value if isinstance(value, Threshold) else None
    if not isinstance(value, str):
        raise ValueError(f"trigger {value!r}: 'immediate' or 'N/period' such as '3/10min'")
    return Threshold.parse(value)


Trigger = Annotated[Threshold | None, BeforeValidator(_trigger)]
Patterns = list[Annotated[str, Field(min_length=1, max_length=255)]]


class ShapingRule(Section):
    """One rule: the replies it matches (every condition given must hold) and what it does for `duration`."""

    name: str = Field(min_length=1, max_length=100, description="Names the rule in logs, the API and metrics.")
    codes: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        [],
        description="SMTP reply codes matched (`[421, 451]`); empty: any failure code.",
        json_schema_extra={"unit": "SMTP reply code"},
    )
    enhanced_codes: Patterns = Field([], description="Enhanced status codes matched, `*` a wildcard (`4.7.*`).")
    regex: str | None = Field(
        None, description="Regular expression searched in the reply text (case-insensitive, Python `re`)."
    )
    sites: Patterns = Field(
        [],
        description="Glob patterns on the egress path's site (the part after `->`: an MX site, relay or smarthost "
        "`host:port`), e.g. `*.outlook.com`; empty: any.",
    )
    domains: Patterns = Field([], description="Glob patterns on the destination (routing) domain; empty: any.")
    sources: Patterns = Field([], description="Glob patterns on the egress source's name; empty: any.")
    tenants: Patterns = Field([], description="Glob patterns on the tenant of the mail; empty: any.")
    action: ShapingAction = Field(
        description="`suspend_path`: no mail on the egress path (source->site) that got the reply; `limit_path`: "
        "that path at `max_message_rate` and/or `connection_limit`; `suspend_tenant` / `suspend_campaign`: the "
        "scheduled queues of the reply's tenant (campaign) for its domain are suspended; `slow_tenant` / "
        "`slow_campaign`: those queues together go on to egress no faster than `max_message_rate`."
    )
    duration: PositiveDuration = Field(description="How long the action lasts; a new firing extends it.")
    trigger: Trigger = Field(
        None,
        description="`immediate` (default): the first matching reply fires; `N/period` (`3/10min`): the Nth "
        "matching reply for the same path or queues within the period.",
    )
    max_message_rate: Throttle | None = Field(None, description="`limit_path`, `slow_*`: the rate while it acts.")
    connection_limit: Count | None = Field(
        None,
        description="`limit_path`: connections on the path at once while it acts.",
        json_schema_extra={"unit": "connections"},
    )
    match_internal: bool = Field(
        False, description="Also match the delivery worker's own replies (`mailstream: ...`: DNS, TLS, connect)."
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {value!r} does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _parameters_fit_the_action(self) -> ShapingRule:
        if self.duration > MAX_DURATION:
            raise ValueError(f"duration is longer than {MAX_DURATION.days} days")
        if self.action == "limit_path" and self.max_message_rate is None and self.connection_limit is None:
            raise ValueError("limit_path needs max_message_rate or connection_limit (or both)")
        if self.action in ("slow_tenant", "slow_campaign") and self.max_message_rate is None:
            raise ValueError(f"{self.action} needs max_message_rate")
        if self.connection_limit is not None and self.action != "limit_path":
            raise ValueError("connection_limit is for limit_path only")
        if self.max_message_rate is not None and self.action.startswith("suspend"):
            raise ValueError(f"{self.action} suspends: max_message_rate has no meaning there")
        return self

    def compiled(self) -> Rule:
        return Rule(
            name=self.name,
            action=self.action,
            duration=self.duration,
            codes=frozenset(self.codes),
            enhanced_codes=tuple(self.enhanced_codes),
            pattern=re.compile(self.regex, re.IGNORECASE) if self.regex is not None else None,
            sites=tuple(self.sites),
            domains=tuple(self.domains),
            sources=tuple(self.sources),
            tenants=tuple(self.tenants),
            threshold=self.trigger,
            match_internal=self.match_internal,
            max_message_rate=str(self.max_message_rate) if self.max_message_rate is not None else None,
            connection_limit=self.connection_limit,
        )


class ShapingConfig(Section):
    """Adaptive shaping (KumoMTA's traffic-shaping automation, and per-tenant queue actions beyond it)."""

    rules: list[ShapingRule] = Field(
        [], description="Every rule a reply matches acts (each on its own path or queues), in file order."
    )

    @field_validator("rules")
    @classmethod
    def _names_unique(cls, rules: list[ShapingRule]) -> list[ShapingRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"shaping rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return rules

    def compiled(self) -> tuple[Rule, ...]:
        return tuple(r.compiled() for r in self.rules)
