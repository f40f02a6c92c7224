"""What of an undecodable delivery task can still be read: the fields a response needs, from its front."""

from __future__ import annotations

from datetime import UTC, datetime

from mailstream.delivery.unreadable import NEEDED, salvage
from mailstream.events.records import BodyRef, DeliveryTask, SmtpResponse
from mailstream.events.serde import encode

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TASK = DeliveryTask(
    id="tx-1",
    attempt=3,
    attempt_id="tx-1/3",
    queue="example.com",
    egress_pool="p",
    egress_source="s",
    egress_path="s->example.com",
    sender="a@b.test",
    recipient="c@example.com",
    domain="example.com",
    tenant="acme",
    body=BodyRef(sha256="0" * 64, size=1, topic="mail.bodies", partition=0, offset=0),
    created_at=NOW,
    issued_at=NOW,
)


def test_a_task_cut_after_its_tenant_gives_what_a_response_needs() -> None:
    whole = encode(TASK)
    assert salvage(whole[:-10]) == {name: getattr(TASK, name) for name in NEEDED}


def test_a_task_without_a_tenant_reads_as_none() -> None:
    assert salvage(encode(TASK.model_copy(update={"tenant": None})))["tenant"] is None  # type: ignore[index]


def test_nothing_is_guessed_from_a_record_cut_before_the_tenant() -> None:
    whole = encode(TASK)
    cut_at = whole.index(b"acme")  # inside the tenant
    assert salvage(whole[:cut_at]) is None


def test_records_that_are_not_tasks_of_a_known_schema_give_nothing() -> None:
    assert salvage(b"garbage") is None
    assert salvage(b"\xc3\x01" + b"\xff" * 8 + b"rest") is None  # unknown fingerprint
    assert salvage(encode(SmtpResponse(code=250, content="ok", command="DATA"))) is None  # another record type


def test_a_damaged_length_or_union_index_gives_nothing() -> None:
    whole = bytearray(encode(TASK))
    whole[10] = 0x7F  # the id's length: -64 in zigzag
    assert salvage(bytes(whole)) is None
