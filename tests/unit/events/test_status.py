"""Status transitions are typed: an unknown status or field is refused where the transition is made, by mypy
(each `type: ignore` below would be reported unused if mypy accepted the call) and at run time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailstream.events import fixtures
from mailstream.events.status import CHANGEABLE, changed, next_version, reception_status
from mailstream.intake import submission
from mailstream.scheduler.lifecycle import advance, on_accepted

LATER = fixtures.T0 + timedelta(minutes=1)


def test_a_transition_writes_the_next_version_with_its_changes() -> None:
    tx = fixtures.status()
    after = next_version(tx, LATER, status="deferred", next_attempt_at=None, num_attempts=2)
    assert (after.version, after.updated_at, after.status, after.num_attempts) == (tx.version + 1, LATER, "deferred", 2)
    assert after.next_attempt_at is None
    same = changed(tx, queue_state="draining")
    assert (same.version, same.queue_state, same.updated_at) == (tx.version, "draining", tx.updated_at)


def test_a_misspelt_status_is_refused_at_the_call() -> None:
    with pytest.raises(ValueError, match="delivred"):
        next_version(fixtures.status(), LATER, status="delivred")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delivred"):
        advance(fixtures.queued(), LATER, status="delivred")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="paused"):
        changed(fixtures.status(), queue_state="paused")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="squishy"):
        changed(fixtures.status(), bounce_type="squishy")  # type: ignore[arg-type]


def test_an_unknown_or_fixed_field_is_refused_at_the_call() -> None:
    with pytest.raises(TypeError, match="num_attempt"):
        next_version(fixtures.status(), LATER, num_attempt=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="recipient"):
        advance(fixtures.queued(), LATER, recipient="someone@else.test")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="version"):
        changed(fixtures.status(), version=9)  # type: ignore[call-arg]
    assert {"version", "updated_at", "id", "created_at"}.isdisjoint(CHANGEABLE)


def test_ingest_and_stage_1_build_version_0_with_one_function() -> None:
    msg = fixtures.accepted()
    assert submission.reception_status is reception_status
    v0 = reception_status(msg)
    assert (v0.version, v0.status, v0.created_at, v0.updated_at, v0.next_attempt_at) == (
        0,
        "scheduled",
        msg.received_at,
        msg.received_at,
        msg.send_at,
    )
    held = on_accepted(msg, 3, "warm").state
    assert held is not None
    assert held.transaction == reception_status(msg, "warm") == v0.model_copy(update={"egress_pool": "warm"})
