"""Per API key: a rate limit (GCRA, `core.throttle`) and caps on requests in progress and long-poll waiters, so
one client cannot take the replica from the others. A refusal is 429 with Retry-After."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from mailstream.core.clock import Clock
from mailstream.core.throttle import Gcra, ThrottleSpec, admit
from mailstream.ingest.auth import Principal
from mailstream.ingest.problems import Problem


@dataclass(frozen=True, slots=True)
class KeyLimit:
    rate: ThrottleSpec | None  # inject requests; None: no limit
    concurrent: int  # inject requests in progress at once
    waiters: int  # GET long-polls waiting at once


@dataclass(slots=True)
class _Usage:
    gcra: Gcra = field(default_factory=Gcra)
    in_progress: int = 0
    waiting: int = 0


def too_many(detail: str, retry_after: timedelta) -> Problem:
    seconds = max(1, math.ceil(retry_after.total_seconds()))
    return Problem(429, "Too many requests", detail, headers={"Retry-After": str(seconds)})


class KeyLimits:
    def __init__(self, limits: dict[str, KeyLimit], clock: Clock) -> None:
        self._limits = limits  # by Principal.key_id
        self._clock = clock
        self._usage: dict[str, _Usage] = {}

    def _of(self, who: Principal) -> tuple[KeyLimit | None, _Usage]:
        return self._limits.get(who.key_id), self._usage.setdefault(who.key_id, _Usage())

    @contextlib.contextmanager
    def inject(self, who: Principal) -> Iterator[None]:
        """Around one inject request: 429 past the key's rate or its requests in progress."""
        limit, usage = self._of(who)
        if limit is not None:
            if usage.in_progress >= limit.concurrent:
                raise too_many(
                    f"this API key has {usage.in_progress} requests in progress, its limit", timedelta(seconds=1)
                )
            if limit.rate is not None:
                admitted, usage.gcra, retry_after = admit(limit.rate, usage.gcra, self._clock())
                if not admitted:
                    raise too_many(f"this API key's rate limit is {limit.rate}", retry_after)
        usage.in_progress += 1
        try:
            yield
        finally:
            usage.in_progress -= 1

    @contextlib.contextmanager
    def waiter(self, who: Principal) -> Iterator[None]:
        """Around one long-poll wait: 429 past the key's waiters."""
        limit, usage = self._of(who)
        if limit is not None and usage.waiting >= limit.waiters:
            raise too_many(f"this API key has {usage.waiting} status waits open, its limit", timedelta(seconds=1))
        usage.waiting += 1
        try:
            yield
        finally:
            usage.waiting -= 1
