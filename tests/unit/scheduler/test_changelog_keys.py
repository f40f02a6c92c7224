"""The stages' changelog keys: each shape round-trips, is written byte for byte as before, and a key of no
shape is refused; a stage restores state whose keys were written as the stages wrote them before."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.config.model import parse_config
from mailstream.core.egress_path import EgressPath
from mailstream.events import fixtures
from mailstream.events.records import ReadyMessage
from mailstream.events.serde import encode
from mailstream.scheduler import egress_keys, queue_keys
from mailstream.scheduler.egress_keys import Held, PathRate, Rotation, Settlement, SourceLimit
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_keys import Control, Message, QueueRate, TenantLimit, Totals
from mailstream.scheduler.queue_stage import QueueStage
from mailstream.scheduler.stage import MalformedKey

# Every shape, beside the bytes the stages wrote before the key modules existed.
QUEUE_KEYS: list[tuple[queue_keys.Key, bytes]] = [
    (Message("tx-1"), b"m:tx-1"),
    (QueueRate("spring:acme@example.com"), b"l:q:spring:acme@example.com"),
    (TenantLimit("acme"), b"l:t:acme"),
    (Control("state", '{"tenant":"acme"}'), b'z:{"tenant":"acme"}'),
    (Control("bounce", '{"campaign":"spring"}'), b'x:{"campaign":"spring"}'),
    (Totals(("acme", None, "warm")), b'c:["acme",null,"warm"]'),
]
EGRESS_KEYS: list[tuple[egress_keys.Key, bytes]] = [
    (Held("tx-1"), b"h:tx-1"),
    (Settlement(), b"g:"),
    (SourceLimit("ip-1"), b"l:s:ip-1"),
    (PathRate("ip-1->mx.example.com"), b"l:p:ip-1->mx.example.com"),
    (Rotation.of("warm", "example.com"), b"l:w:warm|example.com"),
]


@pytest.mark.parametrize(("key", "raw"), QUEUE_KEYS)
def test_queue_keys_are_the_bytes_written_before_and_round_trip(key: queue_keys.Key, raw: bytes) -> None:
    assert key.key() == raw
    assert queue_keys.parse(raw) == key


@pytest.mark.parametrize(("key", "raw"), EGRESS_KEYS)
def test_egress_keys_are_the_bytes_written_before_and_round_trip(key: egress_keys.Key, raw: bytes) -> None:
    assert key.key() == raw
    assert egress_keys.parse(raw) == key


def test_a_scope_is_what_a_usage_handover_names() -> None:
    assert SourceLimit("mail2").scope == fixtures.usage_handover().scope
    assert egress_keys.parse_scope("s:mail2") == SourceLimit("mail2")
    assert PathRate("ip-1->mx.example.com").path == EgressPath("ip-1", "mx.example.com")
    assert egress_keys.parse_scope("w:a|b|example.com") == Rotation.of("a|b", "example.com")  # a domain has no "|"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"m:",
        b"l:",
        b"l:q:",
        b"l:s:x",
        b"y:tx-1",
        b"\xff",
        b"c:",
        b"c:not json",
        b'c:["acme","spring"]',
        b'c:[1,null,"warm"]',
        b'c:["acme",null,null]',
        b"h:tx-1",
        b"g:",
    ],
)
def test_queue_stage_refuses_a_key_of_no_shape(raw: bytes) -> None:
    with pytest.raises(MalformedKey):
        queue_keys.parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"h:",
        b"g:x",
        b"l:",
        b"l:s:",
        b"l:t:acme",
        b"l:p:ip-1",
        b"l:w:warm",
        b"l:w:|example.com",
        b"l:w:warm|",
        b"m:tx-1",
        b"\xff\xfe",
    ],
)
def test_egress_stage_refuses_a_key_of_no_shape(raw: bytes) -> None:
    with pytest.raises(MalformedKey):
        egress_keys.parse(raw)


names = st.text(min_size=1)


@given(names, names, names, st.one_of(st.none(), names), st.one_of(st.none(), names))
def test_any_name_round_trips(tx_id: str, name: str, pool: str, tenant: str | None, campaign: str | None) -> None:
    stage_1: list[queue_keys.Key] = [
        Message(tx_id),
        QueueRate(name),
        TenantLimit(name),
        Control("state", name),
        Control("bounce", name),
        Totals((tenant, campaign, pool)),
    ]
    for key in stage_1:
        assert queue_keys.parse(key.key()) == key
    stage_2: list[egress_keys.Key] = [Held(tx_id), SourceLimit(name), PathRate(f"{pool}->{name}")]
    if destination := name.replace("|", ""):
        stage_2.append(Rotation.of(pool, destination))
    for egress_key in stage_2:
        assert egress_keys.parse(egress_key.key()) == egress_key


POLICIES = Policies(parse_config({}, env={}))
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_stage_1_restores_state_written_with_the_keys_of_before() -> None:
    queued = fixtures.queued()
    stage = QueueStage(POLICIES)
    stage.assigned(
        3,
        {
            b"m:" + queued.transaction.id.encode(): encode(queued),
            b"l:t:acme": encode(fixtures.limit_state()),
            b"l:q:spring:acme@example.com": encode(fixtures.limit_state()),
            b'z:{"campaign":"spring","tenant":"acme"}': encode(fixtures.suspension()),
            b'c:["acme","spring","warm"]': encode(fixtures.status_counts()),
            b"not a key": b"",  # skipped (and logged), not fatal
        },
    )
    book = stage.books[3]
    assert book.messages[queued.transaction.id] == encode(queued)
    assert book.limits.get(TenantLimit("acme")) == fixtures.limit_state()
    assert book.limits.get(QueueRate("spring:acme@example.com")) == fixtures.limit_state()
    assert len(book.holds) == 1
    assert book.tally.rows("acme")[-1].counts["delivered"] == 9


def test_stage_2_restores_state_written_with_the_keys_of_before() -> None:
    ready: ReadyMessage = fixtures.ready()
    stage = EgressStage(POLICIES)
    stage.assigned(
        3,
        {
            b"h:" + ready.id.encode(): encode(ready),
            b"g:": encode(fixtures.egress_settlement()),
            b"l:s:ip-1": encode(fixtures.limit_state()),
            b"l:p:ip-1->mx.example.com": encode(fixtures.limit_state()),
            b"l:w:unspecified|example.com": encode(fixtures.limit_state()),
        },
    )
    book = stage.books[3]
    assert book.held[ready.id] == encode(ready)
    assert (book.settled_under, book.heard) == ("3f2a9c0d1e5b7a64", {0, 3, 5})
    assert {scope for scope, _ in book.limits.items()} == {
        SourceLimit("ip-1"),
        PathRate("ip-1->mx.example.com"),
        Rotation.of("unspecified", "example.com"),
    }
