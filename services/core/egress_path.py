"""Egress paths, `source->site`: the egress source a message leaves by and the site it goes to.

The key of mail.delivery (so one delivery worker owns a path and its connection shaping), the field
`egress_path` of tasks, responses and log records, and the scope of a path's message rate in stage 2's
state. A source's name cannot contain the separator (the configuration refuses one that does), so a
key parses back into the pair it was made of; a site may (an IPv6 smarthost `[::1]:2525` does not,
but nothing here depends on that).
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "->"


@dataclass(frozen=True, slots=True)
class EgressPath:
    source: str
    site: str  # a relay's host:port, the smarthost, the routing domain's MX site (core.mx_site), or the domain

    def __post_init__(self) -> None:
        if not self.source or SEPARATOR in self.source:
            raise ValueError(f"egress source {self.source!r} cannot name a path (empty, or contains {SEPARATOR!r})")
        if not self.site:
            raise ValueError("an egress path needs a site")

    def key(self) -> str:
        return f"{self.source}{SEPARATOR}{self.site}"

    def __str__(self) -> str:
        return self.key()

    @classmethod
    def parse(cls, text: str) -> EgressPath:
        source, separator, site = text.partition(SEPARATOR)
        if not separator:
            raise ValueError(f"{text!r} is not an egress path (source{SEPARATOR}site)")
        return cls(source, site)
