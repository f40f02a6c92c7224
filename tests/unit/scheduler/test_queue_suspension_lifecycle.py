"""Pure transitions of the queue controls: in_delivery on dispatch, suspended while a suspension covers a
message, back to scheduled or deferred on resume, and the scope that decides what a suspension covers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailstream.core.queue_scope import QueueScope
from mailstream.events import fixtures
from mailstream.events.records import Dispatched, QueuedMessage
from mailstream.scheduler.lifecycle import Effects, held, on_accepted, on_dispatched, promote, resume, suspend

T0 = fixtures.T0
LATER = T0 + timedelta(seconds=5)


def waiting(**changes: object) -> QueuedMessage:
    state = on_accepted(
        fixtures.accepted().model_copy(update={"send_at": None, "received_at": T0, **changes}), 3, "pool"
    ).state
    assert state is not None
    return state


def ready() -> QueuedMessage:
    _, effects = promote(waiting(), T0, "pool")
    assert effects.state is not None
    return effects.state


def notice(q: QueuedMessage, attempt: int = 1) -> Dispatched:
    return Dispatched(
        id=q.transaction.id,
        attempt=attempt,
        attempt_id=f"{q.transaction.id}/{attempt}",
        queue=q.transaction.queue,
        tenant=q.transaction.tenant,
        egress_source="ip-1",
        egress_path="ip-1->example.com",
        issued_at=T0,
    )


def test_dispatch_makes_a_ready_message_in_delivery_with_the_next_version() -> None:
    q = ready()
    effects = on_dispatched(q, notice(q), LATER)
    assert effects.state is not None
    assert effects.state.transaction.status == "in_delivery"
    assert effects.state.transaction.version == q.transaction.version + 1
    assert effects.statuses == [effects.state.transaction]


@pytest.mark.parametrize("case", ["no message", "not ready", "other attempt"])
def test_dispatch_of_an_attempt_that_is_not_outstanding_changes_nothing(case: str) -> None:
    q = ready()
    if case == "no message":
        assert on_dispatched(None, notice(q), LATER) == Effects()
    elif case == "not ready":
        assert on_dispatched(waiting(), notice(q), LATER) == Effects()
    else:
        assert on_dispatched(q, notice(q, attempt=2), LATER) == Effects()


def test_suspend_and_resume_a_fresh_message() -> None:
    q = waiting()
    suspended = suspend(q, LATER).state
    assert suspended is not None
    assert (suspended.transaction.status, suspended.transaction.version) == ("suspended", 1)
    back = resume(suspended, LATER).state
    assert back is not None
    assert (back.transaction.status, back.transaction.version) == ("scheduled", 2)


def test_resume_after_an_attempt_is_deferred_and_keeps_its_retry_time() -> None:
    q = waiting()
    retry_at = T0 + timedelta(minutes=20)
    tx = q.transaction.model_copy(update={"status": "deferred", "num_attempts": 1, "next_attempt_at": retry_at})
    suspended = suspend(q.model_copy(update={"transaction": tx}), LATER).state
    assert suspended is not None
    back = resume(suspended, LATER).state
    assert back is not None
    assert back.transaction.status == "deferred"
    assert back.transaction.next_attempt_at == retry_at


def test_only_waiting_messages_are_suspended_and_only_suspended_ones_resumed() -> None:
    assert suspend(ready(), LATER) == Effects()
    assert resume(waiting(), LATER) == Effects()


def test_held_rewrites_a_status_already_emitted_for_the_same_version() -> None:
    q = waiting()
    emitted = Effects(state=q, statuses=[q.transaction])
    out = held(emitted, LATER)
    assert out.state is not None
    assert out.state.transaction.status == "suspended"
    assert [s.version for s in out.statuses] == [q.transaction.version]
    assert out.statuses[0].status == "suspended"


def test_held_adds_a_version_when_nothing_was_emitted() -> None:
    q = waiting()  # accepted: ingest wrote version 0, the stage emits nothing
    out = held(Effects(state=q), LATER)
    assert [(s.status, s.version) for s in out.statuses] == [("suspended", 1)]


def test_held_leaves_other_effects_alone() -> None:
    q = ready()
    effects = Effects(state=q, statuses=[q.transaction])
    assert held(effects, LATER) is effects
    assert held(Effects(delete=True), LATER) == Effects(delete=True)


def test_scope_matches_every_given_field() -> None:
    scope = QueueScope(tenant="acme", campaign="spring")
    assert scope.matches("spring:acme@example.com", "acme", "spring", "example.com")
    assert not scope.matches("autumn:acme@example.com", "acme", "autumn", "example.com")
    assert not scope.matches("spring:globex@example.com", "globex", "spring", "example.com")
    assert QueueScope(domain="example.com").matches("q", None, None, "EXAMPLE.com")
    assert QueueScope(queue="q").matches("q", "acme", None, "x.test")
    assert not QueueScope(queue="q").matches("r", "acme", None, "x.test")


def test_scope_key_round_trips_and_ignores_order() -> None:
    scope = QueueScope(tenant="acme", domain="example.com")
    assert QueueScope.from_key(scope.key) == scope
    assert scope.key == QueueScope(domain="example.com", tenant="acme").key
    assert scope.key != QueueScope(tenant="acme").key


@pytest.mark.parametrize("fields", [{}, {"tenant": ""}, {"campaign": " x"}])
def test_scope_refuses_empty_names(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"queue scope|non-empty"):
        QueueScope(**fields)
