"""Adaptive shaping in the scheduler: the counted replies and the actions in force of one partition.

Both stages keep a `ShapingBook`: stage 1 for the rules that act on a tenant's (campaign's) scheduled queues,
stage 2 for those that act on an egress path. Each (rule, path or queues) is one `ShapingControl` under the
changelog key `a:<id>`, holding the replies counted towards the rule's threshold and, once it fired, its end;
a firing is also published on mail.shaping for the API and the delivery workers. Written in the transaction of
the reply (stage 1) or of the report of it (stage 2), so a reply is counted once and an action survives restarts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from mailstream.core.egress_path import EgressPath
from mailstream.core.queue_scope import QueueScope
from mailstream.core.shaping import Reply, Rule, Sent, fires, queue_target, triggered
from mailstream.core.throttle import Gcra, ThrottleSpec, admit
from mailstream.events.handler import Writes
from mailstream.events.records import DeliveryResponse, QueuedMessage, ShapingControl
from mailstream.events.serde import decode, encode
from mailstream.events.topics import SHAPING
from mailstream.observability.logs import get_logger
from mailstream.scheduler.stage import send

log = get_logger(__name__)
SHAPED = "a:"
ISSUER = "shaping:"  # QueueSuspension.issued_by of a rule's suspension: "shaping:<rule>"
# A firing that moves the end by less than this is not written again: every reply of a burst of 421s would
# otherwise rewrite the control (and, for a suspension, re-examine the tenant's queued messages).
MIN_EXTENSION = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Shaped:
    """A rule's control on one path or one tenant's queues (`id`: '<rule>|<what>')."""

    id: str

    def key(self) -> bytes:
        return (SHAPED + self.id).encode()


@lru_cache(maxsize=256)
def rate(spec: str) -> ThrottleSpec:
    return ThrottleSpec.parse(spec)


def sent_of(resp: DeliveryResponse, q: QueuedMessage) -> Sent | None:
    try:
        path = EgressPath.parse(resp.egress_path)
    except ValueError:
        return None  # an answer for no path (a worker's refusal before choosing one): no path to judge
    tx = q.transaction
    return Sent(path.source, path.site, q.domain, tenant=tx.tenant, campaign=tx.campaign, queue=tx.queue)


def reports(
    rules: tuple[Rule, ...], resp: DeliveryResponse, sent: Sent, now: datetime
) -> list[tuple[Rule, ShapingControl]]:
    """Each rule the reply matches, with the control (not yet counted) it would set."""
    r = resp.response
    found = []
    for rule in triggered(rules, Reply(r.code, r.enhanced_code, r.content), sent):
        if rule.on_path:
            path = f"{sent.source}->{sent.site}"
            control = ShapingControl(
                id=f"{rule.name}|{path}", rule=rule.name, action=rule.action, path=path, reason=str(r), since=now
            )
        else:
            t = queue_target(rule, sent)
            what = QueueScope(queue=t.queue, tenant=t.tenant, campaign=t.campaign, domain=t.domain).key
            control = ShapingControl(
                id=f"{rule.name}|{what}",
                rule=rule.name,
                action=rule.action,
                tenant=t.tenant,
                campaign=t.campaign,
                domain=t.domain,
                queue=t.queue,
                reason=str(r),
                since=now,
            )
        found.append((rule, control))
    return found


def target_of(c: ShapingControl) -> QueueScope:
    return QueueScope(queue=c.queue, tenant=c.tenant, campaign=c.campaign, domain=c.domain)


class ShapingBook:
    def __init__(self) -> None:
        self._controls: dict[str, ShapingControl] = {}

    def __len__(self) -> int:
        return len(self._controls)

    def restore(self, value: bytes) -> None:
        control = decode(value, ShapingControl)
        self._controls[control.id] = control

    def hit(
        self, rule: Rule, report: ShapingControl, now: datetime, out: Writes, partition: int
    ) -> ShapingControl | None:
        """Count one matching reply; the control if the rule fired (set or extended), else None."""
        current = self._controls.get(report.id)
        fired, hits = fires(rule.threshold, current.hits if current else (), now)
        if not fired:
            self._put((current or report).model_copy(update={"hits": hits}), out, partition)
            return None
        end = now + rule.duration
        live = current is not None and current.in_force(now)
        if live and current is not None and current.until is not None and end - current.until < MIN_EXTENSION:
            if current.hits:
                self._put(current.model_copy(update={"hits": ()}), out, partition)
            return None
        control = report.model_copy(
            update={
                "since": current.since if live and current is not None else now,
                "until": end,
                "hits": (),
                "tat": current.tat if live and current is not None else None,
                "max_message_rate": rule.max_message_rate,
                "connection_limit": rule.connection_limit,
            }
        )
        self._put(control, out, partition)
        send(out, SHAPING, control.id, control.model_copy(update={"tat": None}))
        log.info("shaping_fired", rule=rule.name, control=control.id, until=end.isoformat(), reason=control.reason)
        return control

    def lapse(self, now: datetime, rules: Mapping[str, Rule], out: Writes, partition: int) -> list[ShapingControl]:
        """Forget the controls that ended, and the counts whose replies all left their rule's period."""
        ended = []
        for control in list(self._controls.values()):
            if control.in_force(now):
                continue
            rule = rules.get(control.rule)
            period = rule.threshold.period if rule is not None and rule.threshold is not None else None
            if control.hits and period is not None and max(control.hits) > now - period:
                if control.until is not None:  # ended, but counting again towards the next firing
                    self._put(control.model_copy(update={"until": None, "tat": None}), out, partition)
                    ended.append(control)
                continue
            del self._controls[control.id]
            out.put(partition, Shaped(control.id).key(), None)
            if control.until is not None:
                ended.append(control)
                log.info("shaping_ended", rule=control.rule, control=control.id)
        return ended

    def acting(self) -> int:
        """Controls that fired and have not been forgotten (each tick forgets those that ended): for a gauge."""
        return sum(1 for c in self._controls.values() if c.until is not None)

    def in_force(self, now: datetime) -> Iterator[ShapingControl]:
        return (c for c in self._controls.values() if c.in_force(now))

    def on_path(self, path: str, now: datetime) -> list[ShapingControl]:
        return [c for c in self.in_force(now) if c.path == path]

    def next_end(self, now: datetime) -> datetime | None:
        return min((c.until for c in self.in_force(now) if c.until is not None), default=None)

    # -- slowed queues (stage 1) -------------------------------------------------------------------
    def slowing(self, q: QueuedMessage, now: datetime) -> list[ShapingControl]:
        tx = q.transaction
        return [
            c
            for c in self.in_force(now)
            if c.max_message_rate is not None
            and c.path is None
            and target_of(c).matches(tx.queue, tx.tenant, tx.campaign, q.domain)
        ]

    def wait(self, q: QueuedMessage, now: datetime) -> datetime | None:
        """When the slowed queues covering the message admit it (None: now)."""
        waits = []
        for c in self.slowing(q, now):
            assert c.max_message_rate is not None
            ok, _, after = admit(rate(c.max_message_rate), Gcra(c.tat), now)
            if not ok:
                waits.append(now + after)
        return max(waits) if waits else None

    def charge(self, q: QueuedMessage, now: datetime, out: Writes, partition: int) -> None:
        for c in self.slowing(q, now):
            assert c.max_message_rate is not None
            _, gcra, _ = admit(rate(c.max_message_rate), Gcra(c.tat), now)
            self._put(c.model_copy(update={"tat": gcra.tat}), out, partition)

    def _put(self, control: ShapingControl, out: Writes, partition: int) -> None:
        self._controls[control.id] = control
        out.put(partition, Shaped(control.id).key(), encode(control))
