"""The scheduler's decisions, as pure functions of (state, event, now)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from mailstream.core.backoff import RetryPolicy
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.events import fixtures
from mailstream.events.records import AcceptedMessage, DeliveryResponse, QueuedMessage, SmtpResponse
from mailstream.scheduler.lifecycle import Effects, SchedulerPolicy, on_accepted, on_due, on_response

T0 = fixtures.T0
POLICY = SchedulerPolicy(retry=RetryPolicy(), egress_pool="pool", pools={"pool": [("ip-1", 1), ("ip-2", 1)]},
                         site=None, classifier=BounceClassifier.default())


def accepted(**changes: object) -> AcceptedMessage:
    return fixtures.accepted().model_copy(update={"send_at": None, "received_at": T0, **changes})


def dispatched(msg: AcceptedMessage | None = None) -> Effects:
    return on_accepted(msg or accepted(), 3, POLICY, T0)


def reply(state: QueuedMessage, code: int, enhanced: str | None, text: str, *, attempt: int | None = None,
          at: timedelta = timedelta(seconds=1)) -> DeliveryResponse:
    n = attempt if attempt is not None else state.transaction.num_attempts + 1
    outcome = "DELIVERED" if code < 300 else "TRANSIENT" if code < 500 else "PERMANENT"
    return DeliveryResponse(
        id=state.transaction.id, attempt=n, attempt_id=f"{state.transaction.id}/{n}", queue=state.transaction.queue,
        outcome=outcome, response=SmtpResponse(code=code, enhanced_code=enhanced, content=text, command="RCPT"),
        egress_source="ip-1", egress_path="ip-1->example.com", started_at=T0 + at, completed_at=T0 + at)


def test_accepted_message_is_dispatched_on_its_queue_path() -> None:
    effects = dispatched()
    assert effects.state is not None
    (task,) = effects.tasks
    assert task.attempt == 1
    assert task.attempt_id == "tx-1/1"
    assert task.egress_source in {"ip-1", "ip-2"}
    assert task.egress_path == f"{task.egress_source}->example.com"
    assert task.body == fixtures.BODY
    (status,) = effects.statuses
    assert (status.status, status.version) == ("ready", 1)
    assert effects.state.accepted_partition == 3


def test_routing_domain_and_smarthost_name_the_site() -> None:
    routed = on_accepted(accepted(routing_domain="relay.example.net"), 0, POLICY, T0)
    assert routed.tasks[0].egress_path.endswith("->relay.example.net")


def test_future_send_at_waits_without_a_task() -> None:
    effects = dispatched(accepted(send_at=T0 + timedelta(hours=2)))
    assert effects.tasks == []
    assert effects.state is not None
    assert effects.state.transaction.status == "scheduled"
    assert on_due(effects.state, POLICY, T0 + timedelta(hours=1)).tasks == []
    later = on_due(effects.state, POLICY, T0 + timedelta(hours=2))
    assert [t.attempt for t in later.tasks] == [1]


def test_null_queue_is_cancelled_and_forgotten() -> None:
    effects = dispatched(accepted(queue="null"))
    assert effects.tasks == []
    assert effects.delete
    assert effects.statuses[0].status == "cancelled"


def test_delivered_is_final_and_logged() -> None:
    state = dispatched().state
    assert state is not None
    effects = on_response(state, reply(state, 250, "2.0.0", "ok"), POLICY, T0, random.Random(0))
    assert effects.delete
    (status,) = effects.statuses
    assert status.status == "delivered"
    assert status.is_final
    assert status.attempts[0].response.code == 250
    assert [r.type for r in effects.logs] == ["Delivery"]


def test_permanent_failure_bounces_with_classification() -> None:
    state = dispatched().state
    assert state is not None
    effects = on_response(state, reply(state, 550, "5.1.1", "user unknown"), POLICY, T0, random.Random(0))
    (status,) = effects.statuses
    assert status.status == "bounced"
    assert (status.bounce_classification, status.bounce_type) == ("InvalidRecipient", "hard")
    assert effects.logs[0].type == "Bounce"
    assert effects.logs[0].bounce_classification == "InvalidRecipient"


def test_transient_failure_defers_then_retries_when_due() -> None:
    state = dispatched().state
    assert state is not None
    effects = on_response(state, reply(state, 451, "4.3.0", "later"), POLICY, T0, random.Random(0))
    deferred = effects.state
    assert deferred is not None
    assert deferred.transaction.status == "deferred"
    assert deferred.transaction.num_attempts == 1
    due = deferred.transaction.next_attempt_at
    assert due is not None
    assert timedelta(minutes=19) < due - T0 < timedelta(minutes=21)
    assert [r.type for r in effects.logs] == ["TransientFailure"]
    assert on_due(deferred, POLICY, due - timedelta(seconds=1)).tasks == []
    retry = on_due(deferred, POLICY, due)
    assert [t.attempt_id for t in retry.tasks] == ["tx-1/2"]
    assert retry.statuses[0].status == "ready"


def test_transient_failure_past_max_age_expires_at_once() -> None:
    state = dispatched().state
    assert state is not None
    late = T0 + timedelta(days=6, hours=23, minutes=50)
    effects = on_response(state, reply(state, 451, "4.3.0", "later"), POLICY, late, random.Random(0))
    (status,) = effects.statuses
    assert status.status == "expired"
    assert effects.delete
    assert [r.type for r in effects.logs] == ["TransientFailure", "Expiration"]
    assert effects.logs[1].response.code == 551
    assert effects.logs[1].response.enhanced_code == "5.4.7"


@pytest.mark.parametrize("attempt", [0, 2, 7])
def test_a_response_for_another_attempt_changes_nothing(attempt: int) -> None:
    state = dispatched().state
    assert state is not None
    effects = on_response(state, reply(state, 250, None, "ok", attempt=attempt), POLICY, T0, random.Random(0))
    assert effects == Effects()


def test_a_response_for_a_forgotten_message_changes_nothing() -> None:
    state = dispatched().state
    assert state is not None
    assert on_response(None, reply(state, 250, None, "ok"), POLICY, T0, random.Random(0)) == Effects()


def test_versions_increase_with_every_change() -> None:
    state = dispatched().state
    assert state is not None
    deferred = on_response(state, reply(state, 421, None, "busy"), POLICY, T0, random.Random(0)).state
    assert deferred is not None
    retried = on_due(deferred, POLICY, T0 + timedelta(hours=1)).state
    assert retried is not None
    assert [state.transaction.version, deferred.transaction.version, retried.transaction.version] == [1, 2, 3]


def test_pool_without_eligible_source_defers_with_internal_reason() -> None:
    policy = SchedulerPolicy(**{**{f: getattr(POLICY, f) for f in POLICY.__dataclass_fields__},
                                "pools": {"pool": [("ip-1", 0)]}})
    effects = on_accepted(accepted(), 0, policy, T0)
    assert effects.tasks == []
    (status,) = effects.statuses
    assert status.status == "deferred"
    assert status.num_attempts == 1
    assert status.next_attempt_at is not None
    assert status.next_attempt_at - T0 > timedelta(minutes=19)
    assert effects.logs[0].response.code == 451
    expired = on_due(effects.state, policy, T0 + timedelta(days=7))
    assert expired.delete
    assert expired.statuses[0].status == "expired"
