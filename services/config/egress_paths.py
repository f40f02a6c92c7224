"""Egress paths (source -> site): where a source sends, and the shaping that applies. Pure, cached.

Shared by the scheduler's egress stage (which names the path a task travels on, the key of
mail.delivery) and the delivery worker (which enforces the path's connection shaping), so both
resolve a path the same way. Shaping layers as KumoMTA's SHAPE_BY_DOMAIN / SHAPE_BY_SOURCE example:
defaults, then the site's rule (else the domain's), then the (site, source) rule (else the
(domain, source) one).
"""

from __future__ import annotations

from typing import Any

from mailstream.config.scheduling import EgressConfig, EgressSource, PathShape, TlsPolicy
from mailstream.core.egress_path import EgressPath


def site_of(source: EgressSource, smarthost: str | None, domain: str) -> str:
    """Where a source sends: its relay, else the configured smarthost, else the domain's MX (named by the domain)."""
    if source.relay is not None:
        return f"{source.relay.host}:{source.relay.port}"
    return smarthost or domain


def path_of(source: EgressSource, smarthost: str | None, domain: str) -> EgressPath:
    """The egress path a source's mail to `domain` travels: the scheduler names it, the delivery worker shapes it."""
    return EgressPath(source.name, site_of(source, smarthost, domain))


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
            found = next((r for r in rules if r.source == wanted and r.site == site), None) or next(
                (r for r in rules if r.source == wanted and r.domain == domain), None
            )
            if found is not None:
                return found.starttls
        return None

    def _resolve(self, source: str, site: str, domain: str) -> PathShape:
        rules = self._egress.paths
        by_dest = next((r for r in rules if r.source is None and r.site == site), None) or next(
            (r for r in rules if r.source is None and r.domain == domain), None
        )
        by_source = next((r for r in rules if r.source == source and r.site == site), None) or next(
            (r for r in rules if r.source == source and r.domain == domain), None
        )
        merged = _set_fields(self._egress.path_defaults)
        for layer in (by_dest, by_source):
            if layer is not None:
                merged.update(_set_fields(layer))
        return PathShape(**merged)


def _set_fields(shape: PathShape) -> dict[str, Any]:
    # Not model_dump: it would turn the parsed throttle specs back into plain dicts.
    return {f: v for f in PathShape.model_fields if (v := getattr(shape, f)) is not None}
