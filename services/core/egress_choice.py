"""Choosing an egress source from a pool: weight-proportional, deterministic per attempt."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


class NoEligibleSource(LookupError):
    """Every source in the pool has weight 0."""


def choose_source(entries: Sequence[tuple[str, int]], attempt_key: str) -> str:
    """Pick (name, weight) by weight from a stable hash of the attempt, so a replayed attempt picks the same."""
    total = sum(w for _, w in entries if w > 0)
    if total == 0:
        raise NoEligibleSource("no source in the pool has a positive weight")
    point = int.from_bytes(hashlib.blake2b(attempt_key.encode(), digest_size=8).digest(), "big") % total
    for name, weight in entries:
        if weight <= 0:
            continue
        if point < weight:
            return name
        point -= weight
    raise AssertionError("unreachable: point < total")
