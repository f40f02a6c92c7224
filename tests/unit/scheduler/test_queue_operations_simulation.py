"""Queue operations (rebind, retry, purge, set_priority, suspend/resume by id, cancel/bounce) run by the in-memory
twin of both scheduler stages: what each does to the messages stage 1 holds, the outcome each partition reports,
tenant isolation, and an operation cut short by a restart going on to the exact count."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from mailstream.core.clock import ManualClock
from mailstream.events.records import (
    DeliveryResponse,
    DeliveryTask,
    LogRecord,
    QueuedMessage,
    QueueOperation,
    QueueOperationOutcome,
    SmtpResponse,
    TransactionStatus,
)
from mailstream.events.serde import decode, encode
from mailstream.events.topics import (
    DELIVERY,
    EVENTS,
    PARTITIONS,
    QUEUE_COMMANDS,
    QUEUE_RESULTS,
    RESPONSES,
    STATUS,
    route_key,
)
from mailstream.scheduler.queue_keys import Message
from tests.unit.scheduler.test_queue_controls_simulation import CONFIG, START, Twin

QUEUES: dict[str, object] = {"egress_pool": "warm", "retry_interval": "1h", "max_retry_interval": "1h"}
TWO_POOLS: dict[str, object] = {
    "egress": {
        "sources": [{"name": "mail2", "daily_limit": 100}, {"name": "mail3", "daily_limit": 100}],
        "pools": [{"name": "warm", "entries": [{"name": "mail2"}]}, {"name": "cold", "entries": [{"name": "mail3"}]}],
    },
    "queues": QUEUES,
}
LATER = START + timedelta(hours=1)


def operate(twin: Twin, at: datetime, operation: str, *, issued_by: str = "admin", **fields: object) -> str:
    """An operation as ingest places it: by the tenant's route key, or for message ids one record per partition."""
    op = QueueOperation(id=uuid.uuid4().hex, operation=operation, issued_at=at, issued_by=issued_by, **fields)
    ids = op.message_ids
    if ids:
        owners: dict[int, list[str]] = {}
        for tx in ids:
            owners.setdefault(_partition(twin, tx) if _owned(twin, tx) else 0, []).append(tx)
        for p, own in owners.items():
            record = op.model_copy(update={"message_ids": tuple(own), "expected": len(owners)})
            twin.bus.send(QUEUE_COMMANDS.name, b"ids", encode(record), p)
    else:
        twin.bus.send(QUEUE_COMMANDS.name, route_key(op.tenant, op.queue or "*").encode(), encode(op))
    twin.queues.step(at)
    return op.id


def _owned(twin: Twin, tx_id: str) -> bool:
    return any(Message(tx_id).key() in state for state in twin.queues.out.changelog.values())


def _partition(twin: Twin, tx_id: str) -> int:
    [p] = [p for p, state in twin.queues.out.changelog.items() if Message(tx_id).key() in state]
    return p


def outcomes(twin: Twin, op_id: str) -> list[QueueOperationOutcome]:
    found = [decode(r.value, QueueOperationOutcome) for r in twin.bus.read(QUEUE_RESULTS.name)]
    return [o for o in found if o.id == op_id]


def latest(twin: Twin, tx_id: str) -> TransactionStatus:
    return max(
        (s for r in twin.bus.read(STATUS.name) if (s := decode(r.value, TransactionStatus)).id == tx_id),
        key=lambda s: s.version,
    )


def queued(twin: Twin, tx_id: str) -> QueuedMessage:
    return decode(twin.queues.out.changelog[_partition(twin, tx_id)][Message(tx_id).key()], QueuedMessage)


def defer_all(twin: Twin, now: datetime) -> None:
    """Stage 2's tasks answered 451: every message goes back deferred for its retry interval."""
    for record in twin.bus.read(DELIVERY.name, twin._tasks_read):
        task = decode(record.value, DeliveryTask)
        twin.sent.append(task)
        answer = DeliveryResponse(
            id=task.id,
            attempt=task.attempt,
            attempt_id=task.attempt_id,
            queue=task.queue,
            outcome="TRANSIENT",
            response=SmtpResponse(code=451, enhanced_code="4.7.1", content="try later"),
            egress_source=task.egress_source,
            egress_path=task.egress_path,
            started_at=now,
            completed_at=now,
        )
        twin.bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(answer))
    twin._tasks_read = len(twin.bus.read(DELIVERY.name))
    twin.queues.step(now)


def test_rebind_to_a_pool_sends_through_it_and_counts_what_it_moved() -> None:
    clock = ManualClock(START)
    twin = Twin(TWO_POOLS)
    spring = twin.submit(4, START, send_at=LATER)
    autumn = twin.submit(2, START, send_at=LATER, campaign="autumn", queue="autumn:acme@example.com")
    twin.step(START)
    op = operate(twin, START, "rebind", tenant="acme", queue="spring:acme@example.com", to_pool="cold")
    [outcome] = outcomes(twin, op)
    assert (outcome.affected, outcome.affected_queues, outcome.errors) == (4, ("spring:acme@example.com",), ())
    assert {latest(twin, tx).status for tx in spring} == {"scheduled"}  # same ids, same status, new version
    assert {latest(twin, tx).egress_pool for tx in spring} == {"cold"}
    twin.run(clock, LATER + timedelta(minutes=2))
    assert {t.egress_source for t in twin.sent if t.id in spring} == {"mail3"}
    assert {t.egress_source for t in twin.sent if t.id in autumn} == {"mail2"}
    assert twin.statuses(spring + autumn) == {"delivered": 6}


def test_rebind_to_another_queue_rederives_its_scheduling_and_keeps_tenant_and_domain() -> None:
    config = {**TWO_POOLS, "queues": {**QUEUES, "rules": [{"campaign": "vip", "egress_pool": "cold"}]}}
    clock = ManualClock(START)
    twin = Twin(config)
    ids = twin.submit(3, START, send_at=LATER)
    twin.step(START)
    op = operate(twin, START, "rebind", message_ids=tuple(ids), to_queue="vip:acme@example.com!relay.test")
    assert [o.affected for o in outcomes(twin, op)] == [3]
    status = latest(twin, ids[0])
    assert (status.queue, status.campaign, status.tenant, status.id) == (
        "vip:acme@example.com!relay.test",
        "vip",
        "acme",
        ids[0],
    )
    assert queued(twin, ids[0]).routing_domain == "relay.test"
    twin.run(clock, LATER + timedelta(minutes=2))
    assert {t.egress_source for t in twin.sent} == {"mail3"}  # the vip rule's pool
    assert twin.statuses(ids) == {"delivered": 3}

    [other] = twin.submit(1, clock(), send_at=clock() + timedelta(hours=1))
    twin.step(clock())
    bad = operate(twin, clock(), "rebind", message_ids=(other,), to_queue="globex@example.com")
    [outcome] = outcomes(twin, bad)
    assert outcome.affected == 0
    assert "not a queue of the message's tenant" in outcome.errors[0]
    assert queued(twin, other).transaction.queue == "spring:acme@example.com"


def test_retry_makes_deferred_messages_due_now() -> None:
    clock = ManualClock(START)
    twin = Twin(TWO_POOLS)
    twin.answer = False
    ids = twin.submit(3, START)
    twin.step(START)
    defer_all(twin, START)
    assert twin.statuses(ids) == {"deferred": 3}
    due = latest(twin, ids[0]).next_attempt_at
    assert due is not None
    assert due > START + timedelta(minutes=50)
    op = operate(twin, START + timedelta(minutes=5), "retry", tenant="acme")
    assert [o.affected for o in outcomes(twin, op)] == [3]
    twin.answer = True
    twin.run(ManualClock(START + timedelta(minutes=5)), START + timedelta(minutes=7))
    assert twin.statuses(ids) == {"delivered": 3}  # long before the hour's retry
    again = operate(twin, START + timedelta(minutes=8), "retry", tenant="acme")
    assert [o.affected for o in outcomes(twin, again)] == [0]
    del clock


def test_purge_drops_messages_without_delivering_them_as_an_admin_bounce() -> None:
    clock = ManualClock(START)
    twin = Twin()
    ids = twin.submit(3, START, send_at=LATER)
    keep = twin.submit(1, START, send_at=LATER, campaign="autumn", queue="autumn:acme@example.com")
    twin.step(START)
    op = operate(twin, START, "purge", tenant="acme", campaign="spring", reason="sent twice")
    assert [o.affected for o in outcomes(twin, op)] == [3]
    twin.run(clock, LATER + timedelta(minutes=2))
    assert twin.statuses(ids + keep) == {"cancelled": 3, "delivered": 1}
    assert not {t.id for t in twin.sent} & set(ids)
    final = latest(twin, ids[0])
    assert (final.final_reason, final.bounce_classification) == ("cancelled: purged: sent twice", "AdminBounce")
    logs = [rec for r in twin.bus.read(EVENTS.name) if (rec := decode(r.value, LogRecord)).id in ids]
    assert sorted(rec.type for rec in logs) == ["AdminBounce"] * 3
    assert logs[0].response.content == "Administrator bounced with reason: purged: sent twice"


def test_set_priority_by_id_reaches_messages_on_several_partitions() -> None:
    twin = Twin()
    acme = twin.submit(2, START, send_at=LATER)
    globex = twin.submit(2, START, send_at=LATER, tenant="globex", queue="spring:globex@example.com")
    twin.step(START)
    assert _partition(twin, acme[0]) != _partition(twin, globex[0])
    op = operate(twin, START, "set_priority", message_ids=(*acme, *globex, "nope"), priority=9)
    found = outcomes(twin, op)
    assert sorted(o.affected for o in found) == [0, 2, 2]  # "nope" went to a partition of its own, which has none
    assert {o.expected for o in found} == {3}
    assert [e for o in found for e in o.errors] == ["nope is not queued (finished, unknown, or not this key's)"]
    assert {queued(twin, tx).priority for tx in acme + globex} == {9}
    again = operate(twin, START, "set_priority", message_ids=tuple(acme), priority=9)
    assert [o.affected for o in outcomes(twin, again)] == [0]  # already so


def test_a_tenant_touches_only_its_own_messages() -> None:
    twin = Twin()
    globex = twin.submit(2, START, send_at=LATER, tenant="globex", queue="spring:globex@example.com")
    twin.step(START)
    op = operate(twin, START, "purge", message_ids=tuple(globex), issued_by="tenant:acme")
    [outcome] = outcomes(twin, op)
    assert outcome.affected == 0
    assert len(outcome.errors) == 2
    assert twin.statuses(globex) == {"scheduled": 2}


def test_suspend_by_id_holds_through_its_queues_resume_until_resumed_by_id() -> None:
    clock = ManualClock(START)
    twin = Twin()
    held, free = twin.submit(1, START, send_at=LATER), twin.submit(1, START, send_at=LATER)
    twin.step(START)
    op = operate(twin, START, "suspend", message_ids=tuple(held), reason="check it")
    assert [o.affected for o in outcomes(twin, op)] == [1]
    twin.command(START, "suspend", tenant="acme")
    twin.command(START, "resume", tenant="acme")
    twin.run(clock, LATER + timedelta(minutes=2))
    assert twin.statuses(held + free) == {"suspended": 1, "delivered": 1}
    resumed = operate(twin, clock(), "resume", message_ids=tuple(held))
    assert [o.affected for o in outcomes(twin, resumed)] == [1]
    twin.run(clock, clock() + timedelta(minutes=2))
    assert twin.statuses(held) == {"delivered": 1}


def test_a_scopes_suspend_and_bounce_through_operations_count_what_they_did() -> None:
    twin = Twin()
    ids = twin.submit(3, START, send_at=LATER)
    twin.step(START)
    suspended = operate(twin, START, "suspend", tenant="acme", campaign="spring")
    assert [o.affected for o in outcomes(twin, suspended)] == [3]
    assert twin.statuses(ids) == {"suspended": 3}
    bounced = operate(twin, START, "bounce", tenant="acme", reason="recall", until=START + timedelta(minutes=5))
    assert [o.affected for o in outcomes(twin, bounced)] == [3]
    assert twin.statuses(ids) == {"cancelled": 3}


def test_an_operation_cut_short_by_a_restart_goes_on_to_the_exact_count() -> None:
    clock = ManualClock(START)
    twin = Twin(TWO_POOLS)
    ids = twin.submit(10, START, send_at=LATER)
    twin.step(START)
    twin.queue_stage.budget = 3  # three messages a batch: the operation spans several transactions
    op = operate(twin, START, "rebind", tenant="acme", to_pool="cold")
    assert outcomes(twin, op) == []  # not done yet: its progress is in the changelog

    again = Twin(TWO_POOLS, bus=twin.bus, changelogs=twin.changelogs())
    again.queue_stage.budget = 3
    again.run(clock, LATER + timedelta(minutes=3))
    [outcome] = outcomes(again, op)
    assert outcome.affected == 10
    assert {t.egress_source for t in again.sent} == {"mail3"}
    assert again.statuses(ids) == {"delivered": 10}
    assert not any(k.startswith(b"o:") for state in again.changelogs()[0].values() for k in state)


def test_every_partition_answers_an_admins_scope_without_a_tenant() -> None:
    twin = Twin(CONFIG)
    twin.submit(2, START, send_at=LATER)
    twin.submit(1, START, send_at=LATER, tenant="globex", queue="spring:globex@example.com")
    twin.step(START)
    op = QueueOperation(
        id=uuid.uuid4().hex, operation="cancel", domain="example.com", issued_at=START, issued_by="admin",
        expected=PARTITIONS,
    )  # fmt: skip
    for p in range(PARTITIONS):
        twin.bus.send(QUEUE_COMMANDS.name, b"k", encode(op), p)
    twin.queues.step(START)
    found = outcomes(twin, op.id)
    assert len(found) == PARTITIONS
    assert sum(o.affected for o in found) == 3
