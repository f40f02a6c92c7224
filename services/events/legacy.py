"""Records written before 2026-12-02 in a shape that has its own record type since, read as that type.

Until then a cancel notice travelled on mail.ready as a ReadyMessage with `cancel_reason`, and stage 2's
EXPIRED/CANCELLED answers on mail.responses as DeliveryResponses with that outcome. Such records may
still be on the topics after an upgrade (retention is 10 days), so the readers pass what they decode
through here. Delete this module, and those fields and symbols' use, once no such record can be left.
"""

from __future__ import annotations

from mailstream.events.records import CancelNotice, DeliveryResponse, EgressVerdict, ReadyMessage


def as_cancel_notice(ready: ReadyMessage) -> CancelNotice | None:
    """The cancel notice an old writer sent as a ReadyMessage; None for a promotion."""
    if ready.cancel_reason is None:
        return None
    return CancelNotice(
        id=ready.id,
        attempt=ready.attempt,
        queue=ready.queue,
        tenant=ready.tenant,
        egress_pool=ready.egress_pool,
        reason=ready.cancel_reason,
        cancelled_at=ready.ready_at,
    )


def as_egress_verdict(resp: DeliveryResponse) -> EgressVerdict | None:
    """Stage 2's verdict an old writer sent as a DeliveryResponse; None for a delivery attempt's outcome."""
    if resp.outcome not in ("EXPIRED", "CANCELLED"):
        return None
    return EgressVerdict(
        id=resp.id,
        attempt=resp.attempt,
        attempt_id=resp.attempt_id,
        queue=resp.queue,
        verdict=resp.outcome,
        reason=resp.response.content,
        decided_at=resp.completed_at,
    )
