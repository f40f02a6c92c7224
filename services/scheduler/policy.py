"""Configuration resolved for one scheduled queue, one egress path, one egress group. Pure, cached.

Queue rules merge in order of specificity (how many of tenant/campaign/domain/routing_domain they
match), file order breaking ties, so `{tenant: acme}` is overridden by `{tenant: acme, campaign: x}`.
Path shaping resolves in `mailstream.config.egress_paths`, shared with the delivery worker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mailstream.config.egress_paths import PathShapes, site_of
from mailstream.config.model import Config
from mailstream.config.scheduling import EgressPool, EgressSource, PathShape, QueueRule, QueueSettings, TenantLimits
from mailstream.core.backoff import RetryPolicy
from mailstream.core.send_window import SendWindow
from mailstream.core.suppression import Suppressing
from mailstream.core.throttle import ThrottleSpec

_MATCH_FIELDS = ("tenant", "campaign", "domain", "routing_domain")


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    egress_pool: str
    retry: RetryPolicy
    max_message_rate: ThrottleSpec | None
    priority: int
    windows: tuple[SendWindow, ...]  # the queue's (or campaign's) window and the tenant's; all must be open
    tenant: TenantLimits | None


def _matches(rule: QueueRule, key: tuple[str | None, ...]) -> bool:
    return all(getattr(rule, f) is None or getattr(rule, f) == v for f, v in zip(_MATCH_FIELDS, key, strict=True))


def _specificity(rule: QueueRule) -> int:
    return sum(getattr(rule, f) is not None for f in _MATCH_FIELDS)


def _egress_groups(pools: list[EgressPool]) -> dict[str, str]:
    """Pool name -> group name; pools sharing a source form one group (named after its first pool)."""
    parent = {p.name: p.name for p in pools}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    owner: dict[str, str] = {}
    for pool in pools:
        for entry in pool.entries:
            if entry.name in owner:
                parent[root(pool.name)] = root(owner[entry.name])
            else:
                owner[entry.name] = pool.name
    return {p.name: root(p.name) for p in pools}


class Policies:
    """Resolves and caches per-queue and per-path settings from one validated configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._queues: dict[tuple[str | None, ...], QueuePolicy] = {}
        self._shapes = PathShapes(config.egress)
        self.groups = _egress_groups(config.egress.pools)
        self._source_groups = {e.name: self.groups[p.name] for p in config.egress.pools for e in p.entries}
        # Changes when pools are regrouped (or renamed): stage 2 then settles who owns what again.
        self.grouping = hashlib.sha256(
            json.dumps(sorted(self._source_groups.items()) + sorted(self.groups.items())).encode()
        ).hexdigest()[:16]
        self.pools = {p.name: p for p in config.egress.pools}
        self.sources = {s.name: s for s in config.egress.sources}
        self.reset_zone = config.egress.daily_reset_timezone
        self._suppressing: dict[str | None, Suppressing] = {}
        self.shaping_rules = config.shaping.compiled()  # adaptive shaping, in file order
        self.shaping = {r.name: r for r in self.shaping_rules}

    def queue(self, tenant: str | None, campaign: str | None, domain: str, routing_domain: str | None) -> QueuePolicy:
        key = (tenant, campaign, domain, routing_domain)
        found = self._queues.get(key)
        if found is None:
            found = self._queues[key] = self._resolve_queue(key)
        return found

    def _resolve_queue(self, key: tuple[str | None, ...]) -> QueuePolicy:
        q = self.config.queues
        merged: dict[str, Any] = {
            f: getattr(q, f)
            for f in (
                "egress_pool",
                "retry_interval",
                "max_retry_interval",
                "max_age",
                "max_message_rate",
                "priority",
                "send_window",
            )
        }
        rules = sorted((r for r in q.rules if _matches(r, key)), key=_specificity)  # stable: file order in ties
        for rule in rules:
            # Not model_dump: it would turn parsed throttle specs and send windows back into dicts.
            merged.update({f: v for f in QueueSettings.model_fields if (v := getattr(rule, f)) is not None})
        tenant = self.config.tenants.get(key[0]) if key[0] else None
        windows = tuple(w for w in (merged["send_window"], tenant.send_window if tenant else None) if w is not None)
        return QueuePolicy(
            egress_pool=merged["egress_pool"],
            retry=RetryPolicy(merged["retry_interval"], merged["max_retry_interval"], merged["max_age"]),
            max_message_rate=merged["max_message_rate"],
            priority=merged["priority"],
            windows=windows,
            tenant=tenant,
        )

    def suppressing(self, tenant: str | None) -> Suppressing:
        """Which bounce types put a recipient of the tenant's mail on its suppression list, and for how long."""
        found = self._suppressing.get(tenant)
        if found is None:
            found = self._suppressing[tenant] = self.config.suppression.rules(tenant)
        return found

    def group_of(self, pool: str) -> str:
        """The egress group owning a pool; an unknown pool (removed from the file) is its own group."""
        return self.groups.get(pool, pool)

    def group_of_source(self, name: str) -> str | None:
        """The egress group a source belongs to (None: it is in no pool)."""
        return self._source_groups.get(name)

    def pool(self, name: str) -> EgressPool | None:
        return self.pools.get(name)

    def source(self, name: str) -> EgressSource | None:
        return self.sources.get(name)

    def site(self, source: EgressSource, domain: str, routing_domain: str | None, mx_site: str | None = None) -> str:
        """Where a source sends: its relay, else the configured smarthost, else the (routing) domain's MX site
        (stage 2's lookup), else the (routing) domain."""
        return site_of(source, self.config.delivery.smarthost, routing_domain or domain, mx_site)

    def path(self, source: str, site: str, domain: str) -> PathShape:
        return self._shapes.shape(source, site, domain)
