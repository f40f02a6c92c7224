"""The suspensions in force on one stage 1 partition (queue state 'suspended', email-queue model).

A suspension covers every queued message its scope matches, until it is resumed or its `until`
passes; the stage keeps covered messages out of promotion and marks them 'suspended'. Suspensions
are changelog state ("z:<scope key>"), so they are exact and survive restarts.
"""

from __future__ import annotations

from datetime import datetime

from mailstream.core.queue_scope import QueueScope
from mailstream.events.records import ADMIN_ISSUER, QueueCommand, QueueSuspension
from mailstream.events.serde import decode, encode
from mailstream.scheduler.stage import Writes

PREFIX = "z:"


def scope_of(s: QueueSuspension | QueueCommand) -> QueueScope:
    return QueueScope(queue=s.queue, tenant=s.tenant, campaign=s.campaign, domain=s.domain)


class Holds:
    def __init__(self) -> None:
        self._active: dict[str, tuple[QueueScope, QueueSuspension]] = {}

    def __len__(self) -> int:
        return len(self._active)

    def restore(self, value: bytes) -> None:
        suspension = decode(value, QueueSuspension)
        scope = scope_of(suspension)
        self._active[scope.key] = (scope, suspension)

    def apply(self, command: QueueCommand, now: datetime, out: Writes, partition: int) -> QueueScope | None:
        """Suspend or resume the command's scope; returns the scope if anything changed."""
        try:
            scope = scope_of(command)
        except ValueError:
            return None  # names no queue: ingest refuses these, so nothing to do
        key = (PREFIX + scope.key).encode()
        current = self._active.get(scope.key)
        if current is not None and current[1].issued_by == ADMIN_ISSUER and command.issued_by != ADMIN_ISSUER:
            return None  # a tenant neither lifts nor rewrites what an admin suspended
        if command.action == "suspend":
            if command.until is not None and command.until <= now:
                return None  # lapsed before it arrived
            suspension = QueueSuspension(id=command.id, queue=scope.queue, tenant=scope.tenant,
                                         campaign=scope.campaign, domain=scope.domain, reason=command.reason,
                                         since=command.issued_at, until=command.until, issued_by=command.issued_by)
            self._active[scope.key] = (scope, suspension)
            out.put(partition, key, encode(suspension))
            return scope
        if self._active.pop(scope.key, None) is None:
            return None
        out.put(partition, key, None)
        return scope

    def lapse(self, now: datetime, out: Writes, partition: int) -> list[QueueScope]:
        """End the suspensions whose `until` has come; returns their scopes."""
        ended = [key for key, (_, s) in self._active.items() if s.until is not None and s.until <= now]
        scopes = []
        for key in ended:
            scopes.append(self._active.pop(key)[0])
            out.put(partition, (PREFIX + key).encode(), None)
        return scopes

    def covers(self, queue: str, tenant: str | None, campaign: str | None, domain: str,
               now: datetime | None = None) -> bool:
        """Whether a suspension in force at `now` (None: any held) matches the queue."""
        return any((now is None or s.until is None or s.until > now) and scope.matches(queue, tenant, campaign, domain)
                   for scope, s in self._active.values())

    def of_tenant(self, tenant: str | None) -> tuple[QueueSuspension, ...]:
        return tuple(sorted((s for _, s in self._active.values() if s.tenant == tenant), key=lambda s: s.since))

    def tenants(self) -> set[str | None]:
        return {s.tenant for _, s in self._active.values()}
