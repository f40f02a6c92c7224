"""Queue states (draining, disabled) and cancels, run by the in-memory twin of both scheduler stages.

Draining delivers what is queued and refuses what arrives; disabled holds what is queued and refuses
what arrives; a bounce cancels a scope's queued and arriving messages; a single cancel ends a queued
message at once, recalls one stage 2 still holds (nothing reaches mail.delivery after it), and lets an
attempt in delivery finish without a retry. Everything survives a restart from the changelogs.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from mailstream.core.clock import ManualClock
from mailstream.events import fixtures
from mailstream.events.records import (
    DeliveryResponse,
    DeliveryTask,
    EgressVerdict,
    LogRecord,
    ReadyMessage,
    TransactionStatus,
)
from mailstream.events.serde import decode, encode
from mailstream.events.topics import DELIVERY, EVENTS, READY, RESPONSES, STATUS, route_key
from tests.unit.scheduler.test_queue_controls_simulation import CONFIG, START, Twin, counts

SLOW = {**CONFIG, "tenants": {"acme": {"max_message_rate": "1/min"}}}  # one promotion a minute
TIGHT = {
    **CONFIG,
    "egress": {
        **CONFIG["egress"],  # type: ignore[dict-item]
        "sources": [
            {"name": "mail2", "daily_limit": 1},
            {"name": "mail3", "daily_limit": 1},
        ],
    },
}  # two sends a day: stage 2 holds


def latest(twin: Twin, tx_id: str) -> TransactionStatus:
    return max(
        (s for r in twin.bus.read(STATUS.name) if (s := decode(r.value, TransactionStatus)).id == tx_id),
        key=lambda s: s.version,
    )


def logs(twin: Twin, ids: list[str]) -> Counter[str]:
    return Counter(rec.type for r in twin.bus.read(EVENTS.name) if (rec := decode(r.value, LogRecord)).id in ids)


def tasks_for(twin: Twin, ids: list[str], start: int = 0) -> list[DeliveryTask]:
    return [t for r in twin.bus.read(DELIVERY.name, start) if (t := decode(r.value, DeliveryTask)).id in ids]


def test_a_draining_queue_delivers_what_it_holds_and_refuses_what_arrives() -> None:
    clock = ManualClock(START)
    twin = Twin(SLOW)
    old = twin.submit(5, START)
    twin.run(clock, START + timedelta(minutes=2))
    twin.command(clock(), "drain", tenant="acme", reason="moving to a new provider")
    new = twin.submit(3, clock())
    twin.run(clock, clock() + timedelta(minutes=10))
    assert twin.statuses(old) == {"delivered": 5}
    assert twin.statuses(new) == {"bounced": 3}
    assert logs(twin, new) == {"Rejection": 3}
    refused = latest(twin, new[0])
    assert (refused.version, refused.queue_state) == (1, "draining")
    assert refused.final_reason == "refused: queue spring:acme@example.com is draining: moving to a new provider"
    assert latest(twin, old[-1]).queue_state == "draining"  # delivered while the queue drained
    assert not tasks_for(twin, new)

    twin.command(clock(), "resume", tenant="acme")
    after = twin.submit(1, clock())
    twin.run(clock, clock() + timedelta(minutes=3))
    assert twin.statuses(after) == {"delivered": 1}
    assert latest(twin, after[0]).queue_state == "active"


def test_a_disabled_queue_holds_and_refuses_and_its_messages_still_expire() -> None:
    clock = ManualClock(START)
    twin = Twin({**SLOW, "queues": {"egress_pool": "warm", "max_age": "6h"}})
    old = twin.submit(4, START)
    twin.run(clock, START + timedelta(minutes=1))  # one went
    twin.command(clock(), "disable", tenant="acme", campaign="spring", reason="abuse")
    new = twin.submit(2, clock())
    twin.run(clock, clock() + timedelta(minutes=30))
    assert twin.statuses(old) == {"delivered": 1, "suspended": 3}
    assert twin.statuses(new) == {"bounced": 2}
    held = [latest(twin, tx) for tx in old if latest(twin, tx).status == "suspended"]
    assert {(s.status, s.queue_state) for s in held} == {("suspended", "disabled")}
    [stats] = [s for s in twin.stats().values() if s.tenant == "acme"]
    assert [(c.state, c.reason) for c in stats.suspensions] == [("disabled", "abuse")]
    twin.run(clock, START + timedelta(hours=7))
    assert twin.statuses(old) == {"delivered": 1, "expired": 3}


def test_suspended_and_draining_together_read_as_disabled() -> None:
    clock = ManualClock(START)
    twin = Twin(SLOW)
    twin.command(START, "suspend", tenant="acme")
    old = twin.submit(3, START)
    twin.command(START, "drain", tenant="acme", campaign="spring")
    new = twin.submit(1, START)
    twin.run(clock, START + timedelta(minutes=5))
    assert twin.statuses(old) == {"suspended": 3}
    assert twin.statuses(new) == {"bounced": 1}
    assert latest(twin, old[0]).queue_state == "disabled"
    twin.command(clock(), "resume", tenant="acme")  # the suspension ends; the campaign still drains
    twin.run(clock, clock() + timedelta(minutes=5))
    assert twin.statuses(old) == {"delivered": 3}
    assert latest(twin, old[0]).queue_state == "draining"


def test_a_bounce_cancels_what_is_queued_and_what_arrives_until_it_ends() -> None:
    clock = ManualClock(START)
    twin = Twin(SLOW)
    queued = twin.submit(6, START)
    other = twin.submit(2, START, campaign="autumn", queue="autumn:acme@example.com")
    twin.run(clock, START + timedelta(minutes=1))
    twin.command(
        clock(),
        "cancel",
        tenant="acme",
        campaign="spring",
        reason="spam trap hits",
        until=clock() + timedelta(minutes=5),
    )
    arriving = twin.submit(2, clock())
    twin.run(clock, clock() + timedelta(minutes=3))
    done = twin.statuses(queued)
    assert done["cancelled"] >= 5
    assert sum(done.values()) == 6
    assert twin.statuses(arriving) == {"cancelled": 2}
    assert logs(twin, queued + arriving)["AdminBounce"] == done["cancelled"] + 2
    record = next(rec for r in twin.bus.read(EVENTS.name) if (rec := decode(r.value, LogRecord)).type == "AdminBounce")
    assert (record.response.code, record.response.content) == (551, "Administrator bounced with reason: spam trap hits")
    assert latest(twin, arriving[0]).final_reason == "cancelled: spam trap hits"
    twin.run(clock, clock() + timedelta(minutes=10))
    assert twin.statuses(other) == {"delivered": 2}  # another campaign goes on
    later = twin.submit(1, clock())
    twin.run(clock, clock() + timedelta(minutes=3))
    assert twin.statuses(later) == {"delivered": 1}  # the bounce ended
    assert counts(twin)["cancelled"] == done["cancelled"] + 2


def test_cancelling_one_queued_transaction() -> None:
    clock = ManualClock(START)
    twin = Twin(SLOW)
    ids = twin.submit(3, START, send_at=START + timedelta(hours=1))
    twin.run(clock, START + timedelta(minutes=1))
    twin.command(clock(), "cancel", tenant="acme", queue="spring:acme@example.com", transaction_id=ids[1])
    twin.command(clock(), "cancel", issued_by="tenant:globex", tenant="acme", transaction_id=ids[2])  # not its own
    twin.run(clock, START + timedelta(hours=1, minutes=10))
    assert [twin.statuses([tx]) for tx in ids] == [{"delivered": 1}, {"cancelled": 1}, {"delivered": 1}]
    assert latest(twin, ids[1]).final_reason == "cancelled: cancelled by request"
    before = len(twin.bus.read(STATUS.name))
    twin.command(clock(), "cancel", tenant="acme", transaction_id=ids[0])  # already final: nothing
    assert len(twin.bus.read(STATUS.name)) == before


def test_a_message_stage_2_holds_is_recalled_and_never_sent() -> None:
    clock = ManualClock(START)
    twin = Twin(TIGHT)
    ids = twin.submit(6, START)
    twin.run(clock, START + timedelta(minutes=5))
    assert twin.statuses(ids) == {"delivered": 2, "ready": 4}  # the day's two sends went; four wait at stage 2
    assert twin.egress_stage.held_count() == 4
    waiting = [tx for tx in ids if latest(twin, tx).status == "ready"]
    sent_before = len(twin.bus.read(DELIVERY.name))
    twin.command(clock(), "cancel", tenant="acme", transaction_id=waiting[0])
    twin.command(clock(), "cancel", tenant="acme", campaign="spring", reason="recall", until=clock())
    twin.run(clock, START + timedelta(days=2))  # the caps reset: nothing cancelled may go out
    assert twin.statuses(waiting) == {"cancelled": 4}
    assert not tasks_for(twin, waiting, sent_before)
    assert twin.egress_stage.held_count() == 0
    assert latest(twin, waiting[0]).final_reason == "cancelled: cancelled by request"
    assert latest(twin, waiting[1]).final_reason == "cancelled: recall"
    assert logs(twin, waiting) == {"AdminBounce": 4}
    answers = [v for r in twin.bus.read(RESPONSES.name) if isinstance(v := RESPONSES.decode(r.value), EgressVerdict)]
    assert sorted(a.id for a in answers if a.verdict == "CANCELLED") == sorted(waiting)


def test_a_cancel_notice_in_the_shape_written_before_cancel_notices_is_still_obeyed() -> None:
    """A restart after the upgrade reads the notices an older stage 1 left on mail.ready: a ReadyMessage with
    cancel_reason recalls the held attempt as a CancelNotice does."""
    clock = ManualClock(START)
    twin = Twin(TIGHT)
    ids = twin.submit(4, START)
    twin.run(clock, START + timedelta(minutes=5))
    waiting = [tx for tx in ids if latest(twin, tx).status == "ready"]
    assert len(waiting) == 2
    promoted = [
        r
        for r in twin.bus.read(READY.name)
        if isinstance(v := READY.decode(r.value), ReadyMessage) and v.id == waiting[0]
    ]
    [record] = promoted
    old_notice = decode(record.value, ReadyMessage).model_copy(update={"cancel_reason": "old shape"})
    twin.bus.send(READY.name, record.key, encode(old_notice))
    twin.run(clock, START + timedelta(days=2))
    assert latest(twin, waiting[0]).final_reason == "cancelled: old shape"
    assert twin.statuses(waiting) == {"cancelled": 1, "delivered": 1}
    assert waiting[0] not in {t.id for t in twin.sent}


def test_a_message_in_delivery_finishes_its_attempt_and_is_not_retried() -> None:
    clock = ManualClock(START)
    twin = Twin()
    twin.answer = False
    [tx] = twin.submit(1, START)
    twin.step(START)
    assert latest(twin, tx).status == "in_delivery"
    twin.command(START, "cancel", tenant="acme", transaction_id=tx)
    assert latest(twin, tx).status == "in_delivery"  # the attempt goes on

    restarted = Twin(bus=twin.bus, changelogs=twin.changelogs())  # the pending cancel is changelog state
    [task] = tasks_for(restarted, [tx])
    failure = DeliveryResponse(
        id=task.id,
        attempt=task.attempt,
        attempt_id=task.attempt_id,
        queue=task.queue,
        outcome="TRANSIENT",
        response=fixtures.OK_250.model_copy(update={"code": 451, "content": "try later"}),
        egress_source=task.egress_source,
        egress_path=task.egress_path,
        started_at=START,
        completed_at=START,
    )
    restarted.bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(failure))
    restarted.answer = True
    restarted.run(clock, START + timedelta(hours=3))
    assert restarted.statuses([tx]) == {"cancelled": 1}
    assert len(tasks_for(restarted, [tx])) == 1  # no retry
    assert logs(restarted, [tx]) == {"TransientFailure": 1, "AdminBounce": 1}


def test_states_and_bounces_survive_a_restart() -> None:
    clock = ManualClock(START)
    twin = Twin(SLOW)
    held = twin.submit(2, START, send_at=START + timedelta(minutes=1))
    twin.command(START, "disable", tenant="acme", campaign="spring", reason="abuse")
    twin.command(START, "drain", tenant="acme", campaign="autumn")
    twin.command(START, "cancel", tenant="acme", campaign="winter", until=START + timedelta(hours=1))
    twin.run(clock, START + timedelta(minutes=2))

    again = Twin(SLOW, bus=twin.bus, changelogs=twin.changelogs())
    spring = again.submit(1, clock())
    autumn = again.submit(1, clock(), campaign="autumn", queue="autumn:acme@example.com")
    winter = again.submit(1, clock(), campaign="winter", queue="winter:acme@example.com")
    again.run(clock, clock() + timedelta(minutes=5))
    assert again.statuses(held) == {"suspended": 2}
    assert again.statuses(spring + autumn) == {"bounced": 2}
    assert again.statuses(winter) == {"cancelled": 1}
    assert latest(again, held[0]).queue_state == "disabled"
    again.command(clock(), "resume", tenant="acme", campaign="spring")
    again.run(clock, clock() + timedelta(minutes=5))
    assert again.statuses(held) == {"delivered": 2}
