"""The scheduled queue's decisions, as pure functions of (state, event, now)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from mailstream.core.backoff import RetryPolicy
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.events import fixtures
from mailstream.events.records import AcceptedMessage, DeliveryResponse, QueuedMessage, SmtpResponse
from mailstream.events.serde import encode
from mailstream.scheduler.lifecycle import REPLY_KEPT, Effects, deadline, on_accepted, on_response, promote

T0 = fixtures.T0
RETRY = RetryPolicy()
CLASSIFIER = BounceClassifier.default()


def accepted(**changes: object) -> AcceptedMessage:
    return fixtures.accepted().model_copy(update={"send_at": None, "received_at": T0, **changes})


def ready(msg: AcceptedMessage | None = None) -> QueuedMessage:
    """A message accepted and promoted to egress, its first attempt outstanding."""
    state = on_accepted(msg or accepted(), 3, "pool").state
    assert state is not None
    _, effects = promote(state, T0, "pool")
    assert effects.state is not None
    return effects.state


def reply(
    state: QueuedMessage,
    code: int,
    enhanced: str | None,
    text: str,
    *,
    attempt: int | None = None,
    outcome: str | None = None,
) -> DeliveryResponse:
    n = attempt if attempt is not None else state.transaction.num_attempts + 1
    kind = outcome or ("DELIVERED" if code < 300 else "TRANSIENT" if code < 500 else "PERMANENT")
    return DeliveryResponse(
        id=state.transaction.id,
        attempt=n,
        attempt_id=f"{state.transaction.id}/{n}",
        queue=state.transaction.queue,
        outcome=kind,
        response=SmtpResponse(code=code, enhanced_code=enhanced, content=text, command="RCPT"),
        egress_source="ip-1",
        egress_path="ip-1->example.com",
        started_at=T0,
        completed_at=T0,
    )


def respond(state: QueuedMessage | None, resp: DeliveryResponse, at: timedelta = timedelta(seconds=1)) -> Effects:
    return on_response(state, resp, RETRY, CLASSIFIER, T0 + at, random.Random(0))


def test_accepted_message_waits_in_its_queue_as_scheduled() -> None:
    effects = on_accepted(accepted(send_at=T0 + timedelta(hours=2)), 3, "pool")
    assert effects.state is not None
    assert effects.state.transaction.status == "scheduled"
    assert effects.state.transaction.next_attempt_at == T0 + timedelta(hours=2)
    assert effects.state.accepted_partition == 3
    assert effects.statuses == []  # ingest already wrote version 0


def test_promotion_makes_it_ready_for_its_first_attempt() -> None:
    state = on_accepted(accepted(), 0, "pool").state
    assert state is not None
    message, effects = promote(state, T0, "warm")
    assert (message.attempt, message.egress_pool, message.body) == (1, "warm", fixtures.BODY)
    (status,) = effects.statuses
    assert (status.status, status.version, status.egress_pool) == ("ready", 1, "warm")


def test_null_queue_is_cancelled_and_forgotten() -> None:
    effects = on_accepted(accepted(queue="null"), 0, "pool")
    assert effects.delete
    assert effects.statuses[0].status == "cancelled"


def test_delivered_is_final_and_logged() -> None:
    effects = respond(ready(), reply(ready(), 250, "2.0.0", "ok"))
    assert effects.delete
    (status,) = effects.statuses
    assert status.status == "delivered"
    assert status.is_final
    assert status.attempts[0].response.code == 250
    assert [r.type for r in effects.logs] == ["Delivery"]


def test_permanent_failure_bounces_with_classification() -> None:
    effects = respond(ready(), reply(ready(), 550, "5.1.1", "user unknown"))
    (status,) = effects.statuses
    assert status.status == "bounced"
    assert (status.bounce_classification, status.bounce_type) == ("InvalidRecipient", "hard")
    assert effects.logs[0].type == "Bounce"
    assert effects.logs[0].bounce_classification == "InvalidRecipient"


def test_transient_failure_defers_with_backoff() -> None:
    effects = respond(ready(), reply(ready(), 451, "4.3.0", "later"), at=timedelta(0))
    deferred = effects.state
    assert deferred is not None
    assert deferred.transaction.status == "deferred"
    assert deferred.transaction.num_attempts == 1
    due = deferred.transaction.next_attempt_at
    assert due is not None
    assert timedelta(minutes=19) < due - T0 < timedelta(minutes=21)
    assert [r.type for r in effects.logs] == ["TransientFailure"]
    again, _ = promote(deferred, due, "pool")
    assert again.attempt == 2


def test_transient_failure_past_max_age_expires_at_once() -> None:
    late = timedelta(days=6, hours=23, minutes=50)
    effects = respond(ready(), reply(ready(), 451, "4.3.0", "later"), at=late)
    (status,) = effects.statuses
    assert status.status == "expired"
    assert effects.delete
    assert [r.type for r in effects.logs] == ["TransientFailure", "Expiration"]
    assert effects.logs[1].response.code == 551
    assert effects.logs[1].response.enhanced_code == "5.4.7"


def test_expired_while_waiting_for_egress_is_final_without_an_attempt() -> None:
    effects = respond(ready(), reply(ready(), 551, "5.4.7", "max_age reached", outcome="EXPIRED"))
    (status,) = effects.statuses
    assert status.status == "expired"
    assert status.attempts == ()
    assert [r.type for r in effects.logs] == ["Expiration"]


@pytest.mark.parametrize("attempt", [0, 2, 7])
def test_a_response_for_another_attempt_changes_nothing(attempt: int) -> None:
    assert respond(ready(), reply(ready(), 250, None, "ok", attempt=attempt)) == Effects()


def test_a_response_for_a_forgotten_message_changes_nothing() -> None:
    assert respond(None, reply(ready(), 250, None, "ok")) == Effects()


def test_deadline_is_the_message_expiry_else_max_age() -> None:
    state = ready()
    assert deadline(state, RETRY) == T0 + timedelta(days=7)
    own = ready(accepted(expires_at=T0 + timedelta(hours=3)))
    assert deadline(own, RETRY) == T0 + timedelta(hours=3)


def test_a_message_retried_endlessly_with_long_replies_stays_far_below_the_topic_limit() -> None:
    """Every attempt used to be kept, whole: a message deferred often enough (a short retry interval and a long
    max_age), or answered at length, outgrew the 1 MiB its status and state record may take, and its response
    could never be committed. Now the last ATTEMPTS_KEPT attempts are kept, each reply cut to REPLY_KEPT."""
    long_reply = "try again later " * 5000  # 80 KB of text, as a hostile or broken server may send
    state = ready()
    often = RetryPolicy(retry_interval=timedelta(minutes=1), max_retry_interval=timedelta(minutes=1))
    for n in range(300):
        resp = reply(state, 451, "4.7.1", long_reply)
        effects = on_response(state, resp, often, CLASSIFIER, T0 + timedelta(seconds=n), random.Random(0))
        assert effects.state is not None
        _, promoted = promote(effects.state, T0, "pool")
        assert promoted.state is not None
        state = promoted.state
    tx = state.transaction
    assert tx.num_attempts == 300
    assert [a.attempt for a in tx.attempts] == list(range(251, 301))
    assert {len(a.response.content) for a in tx.attempts} == {REPLY_KEPT}
    assert tx.attempts[-1].response.content.endswith("…")
    assert len(encode(state)) < 200 * 1024
    assert len(encode(tx)) < 200 * 1024
