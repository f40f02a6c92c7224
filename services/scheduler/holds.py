"""The queue controls in force on one stage 1 partition: queue states and admin bounces.

A scope has at most one state (suspended, draining or disabled; none is 'active'), set by suspend,
drain or disable and cleared by resume, and at most one bounce, which cancels the scope's messages
until its `until` (KumoMTA's admin bounce). Both are changelog state (`queue_keys.Control`), so they
are exact and survive restarts. A tenant's key neither lifts nor rewrites an admin's control.
"""

from __future__ import annotations

from datetime import datetime

from mailstream.core.queue_scope import QueueScope
from mailstream.core.queue_state import ACTIVE, RuleName, Verdict, verdict
from mailstream.events.handler import Writes
from mailstream.events.records import ADMIN_ISSUER, QueueCommand, QueueSuspension
from mailstream.events.serde import decode, encode
from mailstream.scheduler.queue_keys import Control

RULE_OF: dict[str, RuleName] = {"suspend": "suspended", "drain": "draining", "disable": "disabled", "cancel": "bounce"}


def scope_of(s: QueueSuspension | QueueCommand) -> QueueScope:
    return QueueScope(queue=s.queue, tenant=s.tenant, campaign=s.campaign, domain=s.domain)


def _key(rule: RuleName, scope: QueueScope) -> Control:
    return Control("bounce" if rule == "bounce" else "state", scope.key)


class Holds:
    def __init__(self) -> None:
        self._active: dict[Control, tuple[QueueScope, QueueSuspension]] = {}  # by changelog key

    def __len__(self) -> int:
        return len(self._active)

    def restore(self, value: bytes) -> None:
        control = decode(value, QueueSuspension)
        scope = scope_of(control)
        self._active[_key(control.state, scope)] = (scope, control)

    def apply(self, command: QueueCommand, now: datetime, out: Writes, partition: int) -> QueueScope | None:
        """Set, clear or bounce the command's scope; returns the scope if anything changed."""
        try:
            scope = scope_of(command)
        except ValueError:
            return None  # names no queue: ingest refuses these, so nothing to do
        rule = RULE_OF.get(command.action)
        key = _key(rule or "suspended", scope)
        current = self._active.get(key)
        if current is not None and current[1].issued_by == ADMIN_ISSUER and command.issued_by != ADMIN_ISSUER:
            return None
        if rule is None:  # resume: back to active
            if self._active.pop(key, None) is None:
                return None
            out.put(partition, key.key(), None)
            return scope
        if command.until is not None and command.until <= now and rule != "bounce":
            return None  # lapsed before it arrived (a bounce still cancels what is queued now)
        control = QueueSuspension(
            id=command.id,
            queue=scope.queue,
            tenant=scope.tenant,
            campaign=scope.campaign,
            domain=scope.domain,
            reason=command.reason,
            since=command.issued_at,
            until=command.until,
            issued_by=command.issued_by,
            state=rule,
        )
        self._active[key] = (scope, control)
        out.put(partition, key.key(), encode(control))
        return scope

    def lapse(self, now: datetime, out: Writes, partition: int, *, busy: bool) -> list[QueueScope]:
        """End the controls whose `until` has come; returns their scopes.

        A bounce ends only once the partition has nothing left to re-examine (`busy` false), so every
        message its scope held when it arrived is cancelled however short it was.
        """
        ended = [
            key
            for key, (_, c) in self._active.items()
            if (c.state == "bounce" and not busy and (c.until is None or c.until <= now))
            or (c.state != "bounce" and c.until is not None and c.until <= now)
        ]
        for key in ended:
            out.put(partition, key.key(), None)
        return [self._active.pop(key)[0] for key in ended]

    def verdict(self, queue: str, tenant: str | None, campaign: str | None, domain: str, now: datetime) -> Verdict:
        """What the controls in force at `now` say about one queue (a bounce is in force until it lapses)."""
        if not self._active:
            return ACTIVE
        return verdict(
            (c.state, c.reason)
            for scope, c in self._active.values()
            if (c.state == "bounce" or c.until is None or c.until > now)
            and scope.matches(queue, tenant, campaign, domain)
        )

    def issued_by(self, scope: QueueScope) -> str | None:
        """Who set the scope's state in force (None: it has none)."""
        found = self._active.get(_key("suspended", scope))
        return found[1].issued_by if found is not None else None

    def of_tenant(self, tenant: str | None) -> tuple[QueueSuspension, ...]:
        return tuple(sorted((c for _, c in self._active.values() if c.tenant == tenant), key=lambda c: c.since))

    def tenants(self) -> set[str | None]:
        return {c.tenant for _, c in self._active.values()}
