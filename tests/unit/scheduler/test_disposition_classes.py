"""Every way a transaction ends carries a class and a type, on its status and on its log records.

Run by the in-memory twin of both scheduler stages: an expiry after deferrals, an administrator's bounce, a
DNS-failure bounce and a policy bounce (mailstream's own replies from the delivery worker, whose text names
domains that the wording rules would read as block lists), and a queue's refusal, which suppresses nobody.
"""

from __future__ import annotations

from datetime import timedelta

from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.clock import ManualClock
from mailstream.core.suppression import Suppressing
from mailstream.events import fixtures
from mailstream.events.records import DeliveryResponse, DeliveryTask, LogRecord, SmtpResponse, Suppression
from mailstream.events.serde import decode, encode
from mailstream.events.topics import DELIVERY, EVENTS, QUEUE_COMMANDS, RESPONSES, route_key
from mailstream.scheduler import reports
from tests.unit.scheduler.test_queue_controls_simulation import CONFIG, START, Twin
from tests.unit.scheduler.test_queue_states_simulation import latest

Classes = list[tuple[str, str | None, str | None]]


def log_classes(twin: Twin, tx_id: str) -> Classes:
    records = (decode(r.value, LogRecord) for r in twin.bus.read(EVENTS.name))
    return [(rec.type, rec.bounce_classification, rec.bounce_type) for rec in records if rec.id == tx_id]


def answer(twin: Twin, outcome: str, code: int, enhanced: str, content: str) -> int:
    """Answer every task not yet answered with one reply; how many were answered."""
    fresh = twin.bus.read(DELIVERY.name, twin._tasks_read)
    twin._tasks_read += len(fresh)
    for record in fresh:
        task = decode(record.value, DeliveryTask)
        response = SmtpResponse(code=code, enhanced_code=enhanced, content=content, command="MX")
        reply = DeliveryResponse(
            id=task.id,
            attempt=task.attempt,
            attempt_id=task.attempt_id,
            queue=task.queue,
            outcome=outcome,
            response=response,
            egress_source=task.egress_source,
            egress_path=task.egress_path,
            started_at=START,
            completed_at=START,
        )
        twin.bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(reply))
    return len(fresh)


def bounced_with(outcome: str, code: int, enhanced: str, content: str) -> tuple[Twin, str]:
    twin = Twin({**CONFIG, "suppression": {"on_bounce": {"hard": "forever", "block": "forever"}}})
    twin.answer = False
    [tx] = twin.submit(1, START)
    twin.step(START)
    assert answer(twin, outcome, code, enhanced, content) == 1
    twin.step(START + timedelta(seconds=1))
    return twin, tx


def suppressed(twin: Twin) -> list[str]:
    commands = (QUEUE_COMMANDS.decode(r.value) for r in twin.bus.read(QUEUE_COMMANDS.name))
    return [c.address for c in commands if isinstance(c, Suppression)]


def test_an_expiry_after_deferrals_is_message_expired_soft() -> None:
    clock = ManualClock(START)
    twin = Twin({**CONFIG, "queues": {"egress_pool": "warm", "max_age": "1h", "retry_interval": "10m"}})
    twin.answer = False
    [tx] = twin.submit(1, START)
    deferrals = 0
    while clock() < START + timedelta(hours=2):
        twin.step(clock())
        deferrals += answer(twin, "TRANSIENT", 451, "4.4.3", "mailstream: MX lookup for rbl.example failed")
        twin.queues.step(clock())
        clock.advance(timedelta(minutes=1))
    status = latest(twin, tx)
    assert (status.status, status.bounce_classification, status.bounce_type) == ("expired", "MessageExpired", "soft")
    assert deferrals >= 2
    assert log_classes(twin, tx) == [
        *[("TransientFailure", "DNSFailure", "soft")] * deferrals,
        ("Expiration", "MessageExpired", "soft"),
    ]


def test_an_admin_bounce_is_admin_bounce() -> None:
    twin = Twin()
    [tx] = twin.submit(1, START, send_at=START + timedelta(hours=1))
    twin.step(START)
    twin.command(START, "cancel", tenant="acme", transaction_id=tx)
    status = latest(twin, tx)
    assert (status.status, status.bounce_classification, status.bounce_type) == ("cancelled", "AdminBounce", "soft")
    assert log_classes(twin, tx) == [("AdminBounce", "AdminBounce", "soft")]


def test_a_null_mx_bounce_is_bad_domain_hard() -> None:
    twin, tx = bounced_with("PERMANENT", 556, "5.1.10", "mailstream: domain rbl.example accepts no mail (null MX)")
    status = latest(twin, tx)
    assert (status.status, status.bounce_classification, status.bounce_type) == ("bounced", "BadDomain", "hard")
    assert log_classes(twin, tx) == [("Bounce", "BadDomain", "hard")]


def test_a_deny_list_bounce_is_policy_related_block() -> None:
    twin, tx = bounced_with("PERMANENT", 550, "5.7.1", "mailstream: spamhaus.example is denied by policy")
    status = latest(twin, tx)
    assert (status.status, status.bounce_classification, status.bounce_type) == ("bounced", "PolicyRelated", "block")
    assert log_classes(twin, tx) == [("Bounce", "PolicyRelated", "block")]
    assert suppressed(twin) == [status.recipient]  # an attempt's bounce of a suppressing type


def test_a_queues_refusal_is_policy_related_block_and_suppresses_nobody() -> None:
    twin = Twin({**CONFIG, "suppression": {"on_bounce": {"block": "forever"}}})
    twin.command(START, "drain", tenant="acme", reason="moving")
    [tx] = twin.submit(1, START)
    twin.step(START)
    status = latest(twin, tx)
    assert (status.status, status.bounce_classification, status.bounce_type) == ("bounced", "PolicyRelated", "block")
    assert log_classes(twin, tx) == [("Rejection", "PolicyRelated", "block")]
    assert suppressed(twin) == []  # our queue's state says nothing about the address


def test_a_deferral_is_classified_on_its_log_record_only() -> None:
    twin, tx = bounced_with("TRANSIENT", 451, "4.7.0", "mailstream: TLS required by policy for rbl.example")
    assert latest(twin, tx).bounce_classification is None  # only an end classifies the status
    twin.answer = True
    twin.run(ManualClock(START + timedelta(seconds=2)), START + timedelta(hours=1))
    status = latest(twin, tx)
    assert (status.status, status.bounce_classification, status.bounce_type) == ("delivered", None, None)
    assert log_classes(twin, tx) == [("TransientFailure", "PolicyRelated", "block"), ("Delivery", None, None)]


def test_a_bounce_reported_by_mail_has_its_type_on_its_log_record() -> None:
    delivered = fixtures.status()
    outcome = reports.apply(
        fixtures.out_of_band_report(), delivered, BounceClassifier.default(), Suppressing({}), START
    )
    [record] = outcome.logs
    assert (record.type, record.bounce_classification, record.bounce_type) == ("Bounce", "InvalidRecipient", "hard")
