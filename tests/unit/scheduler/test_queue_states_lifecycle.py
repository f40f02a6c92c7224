"""Pure transitions of queue states and cancels: how controls combine, what a cancel does in each status,
how an attempt's response ends a cancelled message, refusal on arrival, and the controls' own rules."""

from __future__ import annotations

import io
import random
from datetime import timedelta
from pathlib import Path

import pytest
from fastavro import schemaless_writer
from fastavro.schema import load_schema

from mailstream.core.backoff import RetryPolicy
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.queue_state import ACTIVE, verdict
from mailstream.events import fixtures
from mailstream.events.records import DeliveryResponse, QueueCommand, QueuedMessage, TransactionStatus
from mailstream.events.serde import MAGIC, decode, encode, registry
from mailstream.events.topics import QUEUE_STATS
from mailstream.intake.capacity_view import CapacityView
from mailstream.scheduler.holds import Holds
from mailstream.scheduler.lifecycle import (
    Effects,
    cancel,
    on_accepted,
    on_dispatched,
    on_response,
    promote,
    refuse,
    stamped,
)
from tests.unit.scheduler.test_queue_suspension_lifecycle import notice

T0 = fixtures.T0
LATER = T0 + timedelta(seconds=5)
HISTORY = Path(__file__).resolve().parents[3] / "schemas" / "history" / "2026-11-22"


def waiting() -> QueuedMessage:
    state = on_accepted(fixtures.accepted().model_copy(update={"send_at": None, "received_at": T0}), 3, "pool").state
    assert state is not None
    return state


def at_egress(dispatched: bool) -> QueuedMessage:
    _, effects = promote(waiting(), T0, "pool")
    assert effects.state is not None
    if not dispatched:
        return effects.state
    q = on_dispatched(effects.state, notice(effects.state), T0).state
    assert q is not None
    return q


def answer(q: QueuedMessage, outcome: str, code: int = 451) -> DeliveryResponse:
    return fixtures.response().model_copy(
        update={
            "id": q.transaction.id,
            "attempt": q.transaction.num_attempts + 1,
            "outcome": outcome,
            "response": fixtures.OK_250.model_copy(update={"code": code, "content": "try later"}),
        }
    )


def respond(q: QueuedMessage, resp: DeliveryResponse) -> Effects:
    return on_response(q, resp, RetryPolicy(), BounceClassifier.default(), LATER, random.Random(1))


# -- how controls combine ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rules", "state", "holds", "refused_as"),
    [
        ([], "active", False, None),
        ([("suspended", "r")], "suspended", True, None),
        ([("draining", "r")], "draining", False, "draining"),
        ([("disabled", "r")], "disabled", True, "disabled"),
        ([("suspended", "a"), ("draining", "b")], "disabled", True, "disabled"),
        ([("draining", "a"), ("disabled", "b")], "disabled", True, "disabled"),
        ([("bounce", "spam")], "active", False, None),
    ],
)
def test_controls_add_up_and_the_strongest_state_shows(
    rules: list[tuple[str, str]], state: str, holds: bool, refused_as: str | None
) -> None:
    v = verdict(rules)  # type: ignore[arg-type]
    assert (v.state, v.holds, v.refusal[0] if v.refusal else None) == (state, holds, refused_as)
    assert (v.bounce == "spam") == (("bounce", "spam") in rules)


def test_a_disabling_control_names_the_refusal_reason() -> None:
    assert verdict([("draining", "migrating"), ("disabled", "abuse")]).refusal == ("disabled", "abuse")
    assert verdict([("draining", None)]).refusal == ("draining", None)
    assert verdict([]) is ACTIVE


# -- cancel in each status --------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["scheduled", "deferred", "suspended"])
def test_cancelling_a_queued_message_ends_it_with_an_admin_bounce(status: str) -> None:
    q = waiting()
    q = q.model_copy(update={"transaction": q.transaction.model_copy(update={"status": status})})
    effects = cancel(q, LATER, "complaints")
    assert effects.delete
    assert effects.state is None
    assert effects.recall is None
    [tx] = effects.statuses
    assert (tx.status, tx.version, tx.final_reason) == ("cancelled", q.transaction.version + 1, "cancelled: complaints")
    [record] = effects.logs
    assert (record.type, record.response.code, record.response.enhanced_code) == ("AdminBounce", 551, "5.7.1")
    assert record.response.content == "Administrator bounced with reason: complaints"


def test_cancelling_a_message_held_by_stage_2_recalls_its_attempt() -> None:
    q = at_egress(dispatched=False)
    effects = cancel(q, LATER, "stop")
    assert effects.state is not None
    assert effects.state.cancel_reason == "stop"
    assert effects.statuses == []
    assert not effects.delete
    assert effects.recall is not None
    assert (effects.recall.id, effects.recall.attempt, effects.recall.reason, effects.recall.egress_pool) == (
        q.transaction.id,
        1,
        "stop",
        "pool",
    )
    assert effects.recall.cancelled_at == LATER
    assert cancel(effects.state, LATER, "again") == Effects()  # one cancel per attempt


def test_cancelling_a_message_in_delivery_waits_for_its_attempt() -> None:
    q = at_egress(dispatched=True)
    effects = cancel(q, LATER, "stop")
    assert effects.state is not None
    assert effects.state.cancel_reason == "stop"
    assert effects.recall is None
    assert effects.statuses == []


def test_cancelling_nothing_changes_nothing() -> None:
    assert cancel(None, LATER, "stop") == Effects()


def test_stage_2_answering_cancelled_ends_the_message_cancelled() -> None:
    q = cancel(at_egress(dispatched=False), LATER, "stop").state
    assert q is not None
    effects = respond(q, answer(q, "CANCELLED", 551))
    assert [s.status for s in effects.statuses] == ["cancelled"]
    assert effects.delete
    assert [(r.type, r.delivery_protocol) for r in effects.logs] == [("AdminBounce", None)]


def test_a_transient_failure_after_a_cancel_is_not_retried() -> None:
    q = cancel(at_egress(dispatched=True), LATER, "stop").state
    assert q is not None
    effects = respond(q, answer(q, "TRANSIENT"))
    assert [s.status for s in effects.statuses] == ["cancelled"]
    assert effects.delete
    assert [r.type for r in effects.logs] == ["TransientFailure", "AdminBounce"]
    assert effects.statuses[0].num_attempts == 1


def test_a_delivery_after_a_cancel_is_still_a_delivery() -> None:
    q = cancel(at_egress(dispatched=True), LATER, "stop").state
    assert q is not None
    effects = respond(q, answer(q, "DELIVERED", 250))
    assert [s.status for s in effects.statuses] == ["delivered"]


def test_without_a_cancel_a_transient_failure_is_retried() -> None:
    q = at_egress(dispatched=True)
    assert [s.status for s in respond(q, answer(q, "TRANSIENT")).statuses] == ["deferred"]


# -- refusal and the queue state on statuses ----------------------------------------------------------
def test_a_message_arriving_in_a_draining_queue_is_bounced_with_a_rejection() -> None:
    effects = refuse(waiting(), LATER, "draining", "migration")
    [tx] = effects.statuses
    assert (tx.status, tx.final_reason) == ("bounced", "refused: queue spring:acme@example.com is draining: migration")
    [record] = effects.logs
    assert (record.type, record.response.code, record.response.enhanced_code) == ("Rejection", 550, "5.7.1")
    assert effects.delete
    assert effects.state is None


def test_stamping_sets_the_queue_state_on_the_state_and_every_status() -> None:
    q = at_egress(dispatched=False)
    effects = stamped(Effects(state=q, statuses=[q.transaction]), "draining")
    assert effects.state is not None
    assert effects.state.transaction.queue_state == "draining"
    assert [s.queue_state for s in effects.statuses] == ["draining"]
    assert effects.state.transaction.version == q.transaction.version  # the same version, restamped


# -- the controls' own rules --------------------------------------------------------------------------
class Puts:
    def __init__(self) -> None:
        self.state: dict[bytes, bytes | None] = {}

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        raise AssertionError("holds send nothing")

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.state[key] = value


def command(action: str, by: str = "admin", **changes: object) -> QueueCommand:
    return QueueCommand(id="c", action=action, issued_at=T0, issued_by=by, tenant="acme", **changes)


def test_a_scope_has_one_state_and_resume_makes_it_active() -> None:
    holds, out = Holds(), Puts()
    assert holds.apply(command("drain", reason="migration"), T0, out, 0) is not None
    assert holds.verdict("q", "acme", None, "example.com", T0).state == "draining"
    holds.apply(command("disable"), T0, out, 0)
    assert holds.verdict("q", "acme", None, "example.com", T0).state == "disabled"
    assert len(holds) == 1  # replaced, not added
    holds.apply(command("resume"), T0, out, 0)
    assert holds.verdict("q", "acme", None, "example.com", T0) is ACTIVE
    assert all(v is None for v in out.state.values())


def test_a_tenant_cannot_change_what_an_admin_set() -> None:
    holds, out = Holds(), Puts()
    holds.apply(command("disable", reason="abuse"), T0, out, 0)
    assert holds.apply(command("resume", by="tenant:acme"), T0, out, 0) is None
    assert holds.apply(command("drain", by="tenant:acme"), T0, out, 0) is None
    assert holds.verdict("q", "acme", None, "example.com", T0).state == "disabled"


def test_a_bounce_lapses_only_once_its_messages_are_worked_off() -> None:
    holds, out = Holds(), Puts()
    holds.apply(command("cancel", reason="spam", until=T0 + timedelta(minutes=5)), T0, out, 0)
    assert holds.verdict("q", "acme", None, "d", T0).bounce == "spam"
    assert holds.lapse(T0 + timedelta(minutes=10), out, 0, busy=True) == []
    assert holds.verdict("q", "acme", None, "d", T0 + timedelta(minutes=10)).bounce == "spam"
    assert len(holds.lapse(T0 + timedelta(minutes=10), out, 0, busy=False)) == 1
    assert holds.verdict("q", "acme", None, "d", T0) is ACTIVE


def test_a_bounce_and_a_state_on_one_scope_are_separate_controls() -> None:
    holds, out = Holds(), Puts()
    holds.apply(command("drain"), T0, out, 0)
    holds.apply(command("cancel", reason="spam"), T0, out, 0)
    restored = Holds()
    for value in out.state.values():
        assert value is not None
        restored.restore(value)
    v = restored.verdict("q", "acme", None, "d", T0)
    assert (v.state, v.bounce) == ("draining", "spam")


# -- compatibility ------------------------------------------------------------------------------------
def test_a_status_written_before_queue_states_reads_as_active() -> None:
    old = load_schema(str(HISTORY / "mailstream.TransactionStatus.avsc"), _write_hint=False)
    fingerprint = next(
        fp
        for fp, (name, schema) in registry().by_fingerprint.items()
        if name == "mailstream.TransactionStatus" and fp != registry().current[name][0]
    )
    datum = fixtures.status().model_dump(exclude={"queue_state"})
    buf = io.BytesIO()
    buf.write(MAGIC + fingerprint)
    schemaless_writer(buf, old, datum)
    status = decode(buf.getvalue(), TransactionStatus)
    assert status.queue_state == "active"
    assert status.model_copy(update={"queue_state": "active"}) == fixtures.status()


# -- ingest's early refusal ----------------------------------------------------------------------------
def test_ingest_refuses_early_from_the_published_controls() -> None:
    view = CapacityView()
    controls = (
        fixtures.suspension().model_copy(update={"state": "draining", "reason": "moving", "until": None}),
        fixtures.suspension().model_copy(update={"id": "c2", "campaign": "autumn", "state": "bounce"}),
        fixtures.suspension().model_copy(update={"id": "c3", "campaign": "winter", "state": "disabled", "until": T0}),
    )
    view.apply(QUEUE_STATS.name, b"3/acme", encode(fixtures.queue_stats().model_copy(update={"suspensions": controls})))
    assert view.refusal("q", "acme", "spring", "example.com", LATER) == "queue q is draining: moving"
    assert view.refusal("q", "globex", "spring", "example.com", LATER) is None
    assert view.refusal("q", "acme", "autumn", "example.com", LATER) is None  # stage 1 cancels those
    assert view.refusal("q", "acme", "winter", "example.com", LATER) is None  # lapsed
    view.apply(QUEUE_STATS.name, b"3/acme", None)
    assert view.refusal("q", "acme", "spring", "example.com", LATER) is None
