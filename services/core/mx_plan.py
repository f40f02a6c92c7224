"""The order in which to try a domain's mail exchangers (RFC 5321 §5.1, RFC 7505). Pure.

Lower preference first; exchangers of equal preference in random order so load spreads over
them; a domain with a single "." exchanger (null MX) accepts no mail at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from itertools import groupby


def order_exchangers(records: Iterable[tuple[int, str]], rng: random.Random) -> tuple[str, ...] | None:
    """Exchanger host names (without the trailing dot) to try in turn; None for a null MX."""
    found = [(pref, host.rstrip(".").lower()) for pref, host in records]
    if len(found) == 1 and found[0][1] == "":
        return None
    ordered: list[str] = []
    for _, group in groupby(sorted(found, key=lambda r: r[0]), key=lambda r: r[0]):
        hosts = sorted({host for _, host in group if host} - set(ordered))  # a host is tried once, at its best
        rng.shuffle(hosts)
        ordered += hosts
    return tuple(ordered)
