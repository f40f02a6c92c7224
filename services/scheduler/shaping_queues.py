"""Stage 1's part in adaptive shaping: match each attempt's reply against the rules, as it is read.

A rule on the tenant's (campaign's) queues is counted and applied here, by the partition that owns them: a
suspension becomes one of the queue controls (`Holds`, issued by `shaping:<rule>`, so it lists, lapses and
holds messages like an operator's), a slowing is kept in the `ShapingBook` and consulted at each promotion. A
rule on the egress path is reported to stage 2 on mail.ready, keyed by the path's egress group, in this
reply's transaction: the owner of the path counts and applies it (docs/design-decisions.md).
"""

from __future__ import annotations

from datetime import datetime

from mailstream.core.queue_scope import QueueScope
from mailstream.events.handler import Writes
from mailstream.events.records import DeliveryResponse, QueueCommand, QueuedMessage
from mailstream.events.topics import READY
from mailstream.observability.logs import get_logger
from mailstream.scheduler.holds import Holds
from mailstream.scheduler.lifecycle import AT_EGRESS
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.shaping import ISSUER, ShapingBook, reports, sent_of, target_of
from mailstream.scheduler.stage import send

log = get_logger(__name__)


def shape_queues(
    policies: Policies,
    book: ShapingBook,
    holds: Holds,
    q: QueuedMessage | None,
    resp: DeliveryResponse,
    now: datetime,
    out: Writes,
    partition: int,
) -> list[QueueScope]:
    """Count the reply against every rule it matches; returns the queue scopes a suspension now covers."""
    if q is None or q.transaction.status not in AT_EGRESS or resp.attempt != q.transaction.num_attempts + 1:
        return []  # not the outstanding attempt (a repeated response): counted when it was
    sent = sent_of(resp, q)
    if sent is None:
        return []
    suspended = []
    for rule, report in reports(policies.shaping_rules, resp, sent, now):
        if rule.on_path:
            group = policies.group_of_source(sent.source)
            if group is not None:  # a source in no pool any more has no owner to tell
                send(out, READY, group, report)
            continue
        control = book.hit(rule, report, now, out, partition)
        if control is None or not rule.action.startswith("suspend_"):
            continue
        scope = target_of(control)
        owner = holds.issued_by(scope)
        if owner is not None and not owner.startswith(ISSUER):
            log.info("shaping_left_to_operator", rule=rule.name, scope=scope.key, issued_by=owner)
            continue  # an operator's state on the same scope stays as they set it
        command = QueueCommand(
            id=control.id,
            action="suspend",
            queue=control.queue,
            tenant=control.tenant,
            campaign=control.campaign,
            domain=control.domain,
            reason=f"shaping rule {rule.name}: {control.reason}",
            until=control.until,
            issued_at=now,
            issued_by=ISSUER + rule.name,
        )
        changed = holds.apply(command, now, out, partition)
        if changed is not None:
            suspended.append(changed)
    return suspended
