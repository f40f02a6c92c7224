"""Egress paths (source -> site): where a source sends, and the shaping that applies. Pure, cached.

Shared by the scheduler's egress stage (which names the path a task travels on, the key of
mail.delivery) and the delivery worker (which enforces the path's connection shaping), so both
resolve a path the same way. Shaping layers as KumoMTA's SHAPE_BY_DOMAIN / SHAPE_BY_SOURCE example:
defaults, then the site's rule (else the first site pattern it matches, else the domain's), then the
(site, source) rule (likewise).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from mailstream.config.scheduling import EgressConfig, EgressSource, PathRule, PathShape, TlsPolicy
from mailstream.core.egress_path import EgressPath


def site_of(source: EgressSource, smarthost: str | None, domain: str, mx_site: str | None = None) -> str:
    """Where a source sends: its relay, else the configured smarthost, else the domain's MX site (stage 2's
    lookup, `mailstream.core.mx_site`), else the domain (no lookup, or it failed)."""
    if source.relay is not None:
        return f"{source.relay.host}:{source.relay.port}"
    return smarthost or mx_site or domain


def path_of(source: EgressSource, smarthost: str | None, domain: str) -> EgressPath:
    """The egress path a source's mail to `domain` travels without an MX site (the delivery worker's fallback
    for a task that names none it can read)."""
    return EgressPath(source.name, site_of(source, smarthost, domain))


def matching_rule(rules: Sequence[PathRule], source: str | None, site: str, domain: str) -> PathRule | None:
    """The rule for (source, site, domain): an exact site rule, else the first site pattern matching, else
    the domain's."""
    mine = [r for r in rules if r.source == source]
    return (
        next((r for r in mine if r.site == site), None)
        or next(
            (r for r in mine if r.site_pattern is not None and fnmatchcase(site.lower(), r.site_pattern.lower())), None
        )
        or next((r for r in mine if r.domain == domain), None)
    )


class PathShapes:
    """Resolves and caches the shaping of each (source, site, domain)."""

    def __init__(self, egress: EgressConfig) -> None:
        self._egress = egress
        self._cache: dict[tuple[str, str, str], PathShape] = {}

    def shape(self, source: str, site: str, domain: str) -> PathShape:
        key = (source, site, domain)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(source, site, domain)
        return found

    def starttls(self, source: str, site: str, domain: str) -> TlsPolicy | None:
        """The TLS policy path rules give the path, in the order shaping layers (the source's rule first); None
        when no matching rule sets one."""
        rules = [r for r in self._egress.paths if r.starttls is not None]
        for wanted in (source, None):
            found = matching_rule(rules, wanted, site, domain)
            if found is not None:
                return found.starttls
        return None

    def _resolve(self, source: str, site: str, domain: str) -> PathShape:
        rules = self._egress.paths
        merged = _set_fields(self._egress.path_defaults)
        for layer in (matching_rule(rules, None, site, domain), matching_rule(rules, source, site, domain)):
            if layer is not None:
                merged.update(_set_fields(layer))
        return PathShape(**merged)


def _set_fields(shape: PathShape) -> dict[str, Any]:
    # Not model_dump: it would turn the parsed throttle specs back into plain dicts.
    return {f: v for f in PathShape.model_fields if (v := getattr(shape, f)) is not None}
