"""Stage 1 keeps the suppression lists: a suppressing bounce adds its recipient in the bounce's transaction, the
owning partition applies every change in order, and an entry that expires is removed by that partition alone.

The stage runs on the in-memory twin; a delivery response is written as a worker writes it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mailstream.config.model import parse_config
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryProcessor
from mailstream.events.records import DeliveryResponse, ReadyMessage, SmtpResponse, Suppression, SuppressionRemoved
from mailstream.events.serde import decode, encode
from mailstream.events.topics import (
    ACCEPTED,
    PARTITIONS,
    QUEUE_COMMANDS,
    QUEUE_STATE,
    READY,
    RESPONSES,
    SUPPRESSIONS,
    route_key,
    suppression_owner,
)
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_keys import Expiring
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
USER_UNKNOWN = SmtpResponse(code=550, enhanced_code="5.1.1", content="user unknown")
MAILBOX_FULL = SmtpResponse(code=552, enhanced_code="5.2.2", content="mailbox full")
BASE: dict[str, Any] = {
    "egress": {"sources": [{"name": "s1"}], "pools": [{"name": "p", "entries": [{"name": "s1"}]}]},
    "queues": {"egress_pool": "p"},
}


class Stage1:
    def __init__(
        self, suppression: dict[str, Any] | None = None, changelog: dict[int, dict[bytes, bytes]] | None = None
    ):
        config = {**BASE, **({"suppression": suppression} if suppression else {})}
        self.bus = MemoryBus(PARTITIONS)
        self.proc = MemoryProcessor(
            self.bus,
            INPUTS,
            QueueStage(Policies(parse_config(config, env={}))),
            resume_from=changelog,
            changelog=QUEUE_STATE,
        )

    def bounce(self, recipient: str, response: SmtpResponse, *, tenant: str | None = "acme", at: datetime = T0) -> str:
        """Accept a message, let the stage promote it, answer its attempt permanently."""
        msg = fixtures.accepted().model_copy(
            update={
                "id": f"tx-{recipient}",
                "recipient": recipient,
                "tenant": tenant,
                "send_at": None,
                "queue": f"{tenant or ''}@example.com" if tenant else "example.com",
                "received_at": at,
            }
        )
        key = route_key(msg.tenant, msg.queue).encode()
        self.bus.send(ACCEPTED.name, key, encode(msg))
        self.proc.step(at)
        ready = [decode(r.value, ReadyMessage) for r in self.bus.read(READY.name) if READY.carries(r.value)]
        assert ready
        assert ready[-1].id == msg.id
        answer = DeliveryResponse(
            id=msg.id,
            attempt=1,
            attempt_id=f"{msg.id}/1",
            queue=msg.queue,
            outcome="PERMANENT",
            response=response,
            egress_source="s1",
            egress_path="s1->example.com",
            started_at=at,
            completed_at=at,
        )
        self.bus.send(RESPONSES.name, key, encode(answer))
        self.proc.step(at)  # the bounce, and the request it sends on mail.queue-commands
        self.proc.step(at)  # the owner applies the request
        return msg.id

    def change(self, record: Suppression | SuppressionRemoved, at: datetime) -> None:
        """As the API writes it."""
        self.bus.send(QUEUE_COMMANDS.name, suppression_owner(record.tenant, record.address).encode(), encode(record))
        self.proc.step(at)

    def published(self) -> list[tuple[str, Suppression | SuppressionRemoved]]:
        return [(r.key.decode(), SUPPRESSIONS.decode(r.value)) for r in self.bus.read(SUPPRESSIONS.name) if r.key]

    def state_keys(self) -> set[bytes]:
        return {k for part in self.proc.out.changelog.values() for k in part if k.startswith(b"s:")}


def api_entry(address: str, *, expires_at: datetime | None = None, at: datetime = T0) -> Suppression:
    return Suppression(
        address=address,
        tenant="acme",
        reason="asked to",
        source="api",
        created_at=at,
        expires_at=expires_at,
        created_by="tenant:acme",
    )


def test_a_hard_bounce_puts_its_recipient_on_the_tenants_list_for_good() -> None:
    stage = Stage1()
    tx = stage.bounce("Ann@Example.com", USER_UNKNOWN)
    [(key, entry)] = stage.published()
    assert key == "acme!ann@example.com"
    assert isinstance(entry, Suppression)
    assert (entry.source, entry.bounce_type, entry.bounce_classification) == ("bounce", "hard", "InvalidRecipient")
    assert (entry.transaction_id, entry.response, entry.expires_at) == (tx, USER_UNKNOWN, None)
    assert entry.reason == "hard bounce: 550 5.1.1 user unknown"
    assert entry.created_by == "scheduler"
    assert stage.state_keys() == set()  # nothing to expire: no state kept for it
    [request] = [r for r in stage.bus.read(QUEUE_COMMANDS.name)]
    assert request.key == b"tenant:acme"  # the tenant's own partition owns its list


def test_a_bounce_of_a_type_not_configured_does_not_suppress() -> None:
    stage = Stage1()
    stage.bounce("full@example.com", MAILBOX_FULL)  # a soft bounce, permanent as answered
    assert stage.published() == []


def test_mail_without_a_tenant_has_a_list_of_its_own() -> None:
    stage = Stage1()
    stage.bounce("ann@example.com", USER_UNKNOWN, tenant=None)
    [(key, _)] = stage.published()
    assert key == "!ann@example.com"
    assert [r.key for r in stage.bus.read(QUEUE_COMMANDS.name)] == [b"suppression:ann@example.com"]


def test_an_entry_that_expires_is_removed_at_its_expiry_even_after_a_restart() -> None:
    stage = Stage1({"tenants": {"acme": {"on_bounce": {"hard": "1h", "soft": "10m"}}}})
    stage.bounce("ann@example.com", USER_UNKNOWN)
    stage.bounce("full@example.com", MAILBOX_FULL)
    entries = dict(stage.published())
    assert entries["acme!ann@example.com"].expires_at == T0 + timedelta(hours=1)  # type: ignore[union-attr]
    assert stage.state_keys() == {Expiring("acme!ann@example.com").key(), Expiring("acme!full@example.com").key()}
    restarted = Stage1({"tenants": {"acme": {"on_bounce": {"hard": "1h"}}}}, changelog=stage.proc.out.changelog)
    restarted.proc.tick(T0 + timedelta(minutes=10))
    [(key, removed)] = restarted.published()
    assert key == "acme!full@example.com"
    assert isinstance(removed, SuppressionRemoved)
    assert (removed.reason, removed.removed_by) == ("expired", "scheduler")
    restarted.proc.tick(T0 + timedelta(minutes=59))
    assert len(restarted.published()) == 1
    restarted.proc.tick(T0 + timedelta(hours=1))
    assert [k for k, r in restarted.published()] == ["acme!full@example.com", "acme!ann@example.com"]
    assert restarted.state_keys() == set()


def test_the_owner_applies_changes_in_their_order_and_expiry_never_undoes_a_newer_one() -> None:
    stage = Stage1()
    stage.change(api_entry("bob@example.com", expires_at=T0 + timedelta(minutes=5)), T0)
    stage.change(api_entry("bob@example.com"), T0 + timedelta(minutes=1))  # added again, for good
    stage.proc.tick(T0 + timedelta(minutes=6))  # the first expiry has come: it no longer concerns the entry
    assert [type(r).__name__ for _, r in stage.published()] == ["Suppression", "Suppression"]
    assert stage.state_keys() == set()
    stage.change(api_entry("bob@example.com", expires_at=T0 + timedelta(hours=2)), T0 + timedelta(minutes=7))
    stage.change(
        SuppressionRemoved(address="bob@example.com", tenant="acme", removed_at=T0, removed_by="tenant:acme"),
        T0 + timedelta(minutes=8),
    )
    stage.proc.tick(T0 + timedelta(hours=3))
    assert [type(r).__name__ for _, r in stage.published()] == ["Suppression"] * 3 + ["SuppressionRemoved"]
    assert stage.state_keys() == set()


def test_a_change_is_applied_under_the_normalised_address() -> None:
    stage = Stage1()
    stage.change(api_entry(" <Carol@Example.COM.> "), T0)
    [(key, entry)] = stage.published()
    assert key == "acme!carol@example.com"
    assert entry.address == "carol@example.com"
