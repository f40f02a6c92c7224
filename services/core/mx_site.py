"""MX sites: the name of the set of hosts a domain's mail goes to, so domains sharing them share an egress path. Pure.

As KumoMTA's `site_name`: the MX host names (lowercased, without the trailing dot) are ordered by
preference and then alphabetically, split into labels and compared from the TLD inward; each label
position renders as its one label, or `(a|b|c)` when the hosts differ there, with `?` when some
hosts have no label at that position. gmail.com's five exchangers become
`(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com`, and every domain hosted there shares that name.

What a lookup found is an `MxAnswer`; `site_of_answer` turns it into the site stage 2 names the path
by. Only a usable answer names a site of its own: a domain whose lookup failed, does not exist or has
a null MX keeps the domain as its site (the path key it always had), and the delivery worker, which
resolves again when it connects, defers or bounces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

MxStatus = Literal["ok", "implicit", "null", "nxdomain", "failed"]


def ordered_hosts(records: Iterable[tuple[int, str]]) -> tuple[str, ...]:
    """Exchanger names by preference, then alphabetically; each once (at its best preference)."""
    best: dict[str, int] = {}
    for preference, host in records:
        name = host.rstrip(".").lower()
        if name and (name not in best or preference < best[name]):
            best[name] = preference
    return tuple(sorted(best, key=lambda h: (best[h], h)))


def site_name(hosts: Sequence[str]) -> str:
    """The canonical name of a host set (KumoMTA's `factor_names`); a `:port` suffix stays on the last label."""
    if not hosts:
        raise ValueError("a site needs at least one host")
    reversed_labels = [list(reversed(h.rstrip(".").lower().split("."))) for h in hosts]
    depth = max(len(labels) for labels in reversed_labels)
    positions: list[str] = []
    for i in range(depth):
        seen: list[str] = []
        optional = False
        for labels in reversed_labels:
            if i >= len(labels):
                optional = True
            elif labels[i] not in seen:
                seen.append(labels[i])
        text = seen[0] if len(seen) == 1 else "(" + "|".join(seen) + ")"
        positions.append(text + ("?" if optional else ""))
    return ".".join(reversed(positions))


@dataclass(frozen=True, slots=True)
class MxAnswer:
    """What an MX lookup of a domain found, and until when it may be reused."""

    status: MxStatus  # ok: exchangers; implicit: no MX, the domain is its own; null: RFC 7505; failed: transient
    records: tuple[tuple[int, str], ...] = ()  # (preference, host) as answered, for status ok
    ttl: float = 0.0  # seconds the DNS server said the answer may be cached (0 for a failure)
    error: str = ""  # why a failed lookup failed

    @property
    def hosts(self) -> tuple[str, ...]:
        return ordered_hosts(self.records)


def site_of_answer(domain: str, answer: MxAnswer) -> str:
    """The site an MX-delivered domain's path is named by: its exchangers' site name, else the domain itself."""
    if answer.status == "ok" and answer.hosts:
        return site_name(answer.hosts)
    return domain.rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class CacheTimes:
    """How long answers are reused: the DNS TTL within [minimum, maximum]; a failure or a negative answer for
    a fixed time, so a DNS server that is down is not asked again for every batch."""

    minimum: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(hours=1)
    negative: timedelta = timedelta(minutes=5)  # NXDOMAIN, null MX
    failure: timedelta = timedelta(minutes=1)  # timeout, SERVFAIL

    def valid_until(self, answer: MxAnswer, now: datetime) -> datetime:
        if answer.status == "failed":
            return now + self.failure
        if answer.status in ("nxdomain", "null"):
            return now + self.negative
        return now + min(max(timedelta(seconds=answer.ttl), self.minimum), self.maximum)
