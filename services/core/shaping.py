"""Adaptive shaping (KumoMTA's traffic-shaping automation): which rules a delivery reply triggers, and when.

A rule matches a reply by its code, enhanced code and text, where it was sent (the egress path's source and
site, the destination domain) and, for rules that act on scheduled queues, whose mail it was. When it fires it
acts for `duration`: on the egress path (suspend it, or lower its message rate or connection limit: stage 2 and
the delivery worker own those) or on the scheduled queues of the tenant or campaign concerned, for the
destination domain (suspend or slow them: stage 1 owns those; KumoMTA cannot, its issue #299).

A threshold trigger (`3/10min`) fires on the Nth matching reply within the period. Pure: the stages keep the
hit instants and apply the action; nothing here reads the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal, get_args

from mailstream.core.duration import parse_duration

ShapingAction = Literal[
    "suspend_path", "limit_path", "suspend_tenant", "suspend_campaign", "slow_tenant", "slow_campaign"
]
ACTIONS: tuple[ShapingAction, ...] = get_args(ShapingAction)
PATH_ACTIONS = frozenset({"suspend_path", "limit_path"})  # applied by the owner of the egress path
QUEUE_ACTIONS = frozenset(ACTIONS) - PATH_ACTIONS  # applied by the owner of the tenant's scheduled queues
INTERNAL_PREFIXES = ("mailstream: ", "mailstream internal: ")  # the worker's own replies (DNS, TLS, connect, body)


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fire on the `count`th matching reply within `period` (KumoMTA's `{Threshold="N/period"}`)."""

    count: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= timedelta(0):
            raise ValueError("a threshold needs a count of at least 1 and a positive period")

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """`N/period`, the period a duration (`10min`, `1h`) or a bare unit (`hour`, `h`)."""
        count, slash, period = text.strip().partition("/")
        if not slash or not count.strip().isdigit() or not period.strip():
            raise ValueError(f"threshold {text!r} is not N/period, e.g. '3/10min'")
        unit = period.strip()
        return cls(int(count), parse_duration(unit if unit[:1].isdigit() else f"1{unit}"))

    def __str__(self) -> str:
        return f"{self.count}/{int(self.period.total_seconds())}s"


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced_code: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Sent:
    """Where and whose the attempt was: what a rule's scope patterns are matched against."""

    source: str
    site: str
    domain: str  # the routing domain, else the recipient's
    tenant: str | None = None
    campaign: str | None = None
    queue: str | None = None  # the scheduled queue: what a tenant action acts on for mail of no tenant


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    action: ShapingAction
    duration: timedelta
    codes: frozenset[int] = frozenset()  # empty: any code
    enhanced_codes: tuple[str, ...] = ()  # patterns, `4.7.*`; empty: any
    pattern: re.Pattern[str] | None = None  # searched in the text, case-insensitively
    sites: tuple[str, ...] = ()  # glob patterns on the path's site; empty: any
    domains: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    threshold: Threshold | None = None  # None: the first matching reply fires
    match_internal: bool = False  # also the worker's own replies ("mailstream: ...")
    max_message_rate: str | None = None  # limit_path / slow_*: the rate while the rule acts (a throttle spec)
    connection_limit: int | None = None  # limit_path: connections at once while the rule acts

    @property
    def on_path(self) -> bool:
        return self.action in PATH_ACTIONS


def _any(patterns: tuple[str, ...], value: str | None) -> bool:
    if not patterns:
        return True
    folded = (value or "").lower()
    return any(fnmatchcase(folded, p.lower()) for p in patterns)


def matches(rule: Rule, reply: Reply, sent: Sent) -> bool:
    """Whether the reply to an attempt sent so is one the rule is about."""
    if not rule.match_internal and reply.text.startswith(INTERNAL_PREFIXES):
        return False
    if rule.codes and reply.code not in rule.codes:
        return False
    if rule.enhanced_codes and not (
        reply.enhanced_code and any(fnmatchcase(reply.enhanced_code, p) for p in rule.enhanced_codes)
    ):
        return False
    if rule.pattern is not None and not rule.pattern.search(reply.text):
        return False
    if rule.action in ("suspend_campaign", "slow_campaign") and sent.campaign is None:
        return False  # nothing to act on: mail of no campaign
    return (
        _any(rule.sites, sent.site)
        and _any(rule.domains, sent.domain)
        and _any(rule.sources, sent.source)
        and _any(rule.tenants, sent.tenant)
    )


def triggered(rules: tuple[Rule, ...], reply: Reply, sent: Sent) -> list[Rule]:
    """Every rule the reply matches, in file order (each acts on its own scope)."""
    if 200 <= reply.code < 300:
        return []  # a delivery says nothing against the path
    return [r for r in rules if matches(r, reply, sent)]


def fires(threshold: Threshold | None, hits: tuple[datetime, ...], now: datetime) -> tuple[bool, tuple[datetime, ...]]:
    """Count a matching reply at `now`: (fires?, the hits to keep). Firing starts the count again."""
    if threshold is None:
        return True, ()
    recent = (*(t for t in hits if t > now - threshold.period), now)
    if len(recent) >= threshold.count:
        return True, ()
    return False, recent[-threshold.count :]


@dataclass(frozen=True, slots=True)
class QueueTarget:
    """The scheduled queues a queue action covers: the tenant's (or campaign's) mail to the domain; for mail of
    no tenant, its own queue."""

    domain: str
    tenant: str | None = None
    campaign: str | None = None
    queue: str | None = None


def queue_target(rule: Rule, sent: Sent) -> QueueTarget:
    if sent.tenant is None:
        return QueueTarget(domain=sent.domain, queue=sent.queue)
    campaign = sent.campaign if rule.action in ("suspend_campaign", "slow_campaign") else None
    return QueueTarget(domain=sent.domain, tenant=sent.tenant, campaign=campaign)
