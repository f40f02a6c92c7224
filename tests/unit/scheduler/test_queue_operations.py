"""The queue operations' pure decisions on one message, and the result ingest sums from the partitions' outcomes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailstream.events import fixtures
from mailstream.events.records import QueuedMessage, QueueOperation, QueueOperationOutcome
from mailstream.ingest.operation_view import result
from mailstream.scheduler.operations import OperationRefused, Pending, is_control, may_touch, operate

T0 = fixtures.T0
POOLS = {"warm", "cold"}


def op(operation: str, **fields: object) -> QueueOperation:
    return QueueOperation(id="op-1", operation=operation, issued_at=T0, issued_by="admin", **fields)


def message(status: str = "scheduled", **tx: object) -> QueuedMessage:
    q = fixtures.queued()
    return q.model_copy(update={"transaction": q.transaction.model_copy(update={"status": status, **tx})})


def test_rebind_moves_queue_and_pool_and_keeps_id_status_and_tenant() -> None:
    q = message()
    effects = operate(op("rebind", to_queue="autumn:acme@example.com!relay.test", to_pool="cold"), q, T0, T0, POOLS)
    assert effects.state is not None
    tx = effects.state.transaction
    assert (tx.id, tx.status, tx.tenant, tx.queue, tx.campaign) == (
        q.transaction.id, "scheduled", "acme", "autumn:acme@example.com!relay.test", "autumn",
    )  # fmt: skip
    assert (effects.state.routing_domain, effects.state.egress_pool, tx.version) == (
        "relay.test", "cold", q.transaction.version + 1,
    )  # fmt: skip
    assert effects.statuses == [tx]
    assert operate(op("rebind", to_queue=tx.queue, to_pool="cold"), effects.state, T0, T0, POOLS).state is None


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"to_queue": "spring:globex@example.com"}, "not a queue of the message's tenant"),
        ({"to_queue": "spring:acme@other.test"}, "not a queue of the message's tenant"),
        ({"to_pool": "nope"}, "not configured"),
    ],
)
def test_rebind_refuses_another_tenant_domain_or_an_unknown_pool(fields: dict[str, str], error: str) -> None:
    with pytest.raises(OperationRefused, match=error):
        operate(op("rebind", **fields), message(), T0, T0, POOLS)


def test_rebind_leaves_a_message_stage_2_holds() -> None:
    assert operate(op("rebind", to_pool="cold"), message("ready"), T0, T0, POOLS).state is None


def test_retry_only_what_was_deferred_before_the_operation_came() -> None:
    later = T0 + timedelta(hours=1)
    deferred = message("deferred", next_attempt_at=later, num_attempts=1)
    effects = operate(op("retry"), deferred, T0, T0, POOLS)
    assert effects.state is not None
    assert effects.state.transaction.next_attempt_at == T0
    again = message("deferred", next_attempt_at=later, updated_at=T0 + timedelta(seconds=1))
    assert operate(op("retry"), again, T0 + timedelta(seconds=2), T0, POOLS).state is None  # deferred since
    assert operate(op("retry"), message("scheduled", next_attempt_at=later), T0, T0, POOLS).state is None


def test_purge_ends_cancelled_as_an_admin_bounce() -> None:
    effects = operate(op("purge", reason="dup"), message(), T0, T0, POOLS)
    [status] = effects.statuses
    assert (status.status, status.final_reason, status.bounce_classification) == (
        "cancelled", "cancelled: purged: dup", "AdminBounce",
    )  # fmt: skip
    assert [log.type for log in effects.logs] == ["AdminBounce"]
    assert effects.delete


def test_set_priority_changes_queued_messages_only() -> None:
    effects = operate(op("set_priority", priority=1), message(), T0, T0, POOLS)
    assert effects.state is not None
    assert (effects.state.priority, effects.statuses) == (1, [])
    assert operate(op("set_priority", priority=1), effects.state, T0, T0, POOLS).state is None
    assert operate(op("set_priority", priority=1), message("in_delivery"), T0, T0, POOLS).state is None


def test_suspend_and_resume_by_id() -> None:
    held = operate(op("suspend", reason="look"), message(), T0, T0, POOLS).state
    assert held is not None
    assert (held.held, held.transaction.status) == ("look", "suspended")
    released = operate(op("resume"), held, T0, T0, POOLS).state
    assert released is not None
    assert released.held is None  # the stage's verdict then resumes it


def test_controls_and_rights() -> None:
    assert is_control(op("suspend", tenant="acme"))
    assert is_control(op("bounce", tenant="acme", reason="x"))
    assert not is_control(op("suspend", message_ids=("a",)))
    assert not is_control(op("purge", tenant="acme"))
    tenant_op = op("purge").model_copy(update={"issued_by": "tenant:globex"})
    assert not may_touch(tenant_op, message())
    assert may_touch(op("purge"), message())


def test_pending_bounds_its_errors() -> None:
    pending = Pending(op("purge"), T0)
    for i in range(105):
        pending.failed(f"e{i}")
    assert pending.record().errors[-1] == "and 5 more"
    assert len(pending.record().errors) == 101


def test_result_sums_the_partitions_and_says_when_it_is_done() -> None:
    def outcome(p: int, n: int, *errors: str) -> QueueOperationOutcome:
        return QueueOperationOutcome(
            id="op-1", operation="purge", partition=p, affected=n, affected_queues=(f"q{p}",), errors=errors,
            expected=2, completed_at=T0,
        )  # fmt: skip

    partial = result("purge", "op-1", [outcome(1, 3)], 2, T0)
    assert (partial["done"], partial["success"], partial["affected_messages"]) == (False, False, 3)
    whole = result("purge", "op-1", [outcome(1, 3), outcome(4, 2, "x gone")], 2, T0, ["y is not visible"])
    assert (whole["done"], whole["success"], whole["affected_messages"]) == (True, False, 5)
    assert (whole["affected_queues"], whole["errors"]) == (["q1", "q4"], ["y is not visible", "x gone"])
    assert result("purge", "op-1", [outcome(1, 1)], 1, T0)["success"] is True
