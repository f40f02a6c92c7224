"""A stage's changelog writes of one handler call keep the last value per key, and a key written and
deleted in the same call is never written: fewer records, the same state after a restore."""

from __future__ import annotations

from collections.abc import Callable

from mailstream.config.model import parse_config
from mailstream.events import fixtures
from mailstream.events.records import EgressSettlement
from mailstream.events.serde import encode
from mailstream.events.topics import ACCEPTED, READY, route_key
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_keys import Message
from mailstream.scheduler.queue_stage import QueueStage
from mailstream.scheduler.stage import Coalesced


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.puts: list[tuple[int, bytes, bytes | None]] = []

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.sent.append((topic, key))

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.puts.append((partition, key, value))


def test_last_value_per_key_and_a_new_key_deleted_in_the_call_is_never_written() -> None:
    rec = Recorder()
    out = Coalesced(rec)
    out.put(0, b"a", b"1")
    out.put(0, b"a", b"2")
    out.put(0, b"new", b"x", new=True)
    out.put(0, b"new", b"y")
    out.put(0, b"new", None)
    out.put(0, b"old", None)  # existed before the call: its tombstone is written
    out.put(1, b"a", lambda: b"thunk")
    out.send("t", b"k", b"v")
    assert rec.puts == []
    assert rec.sent == [("t", b"k")]
    out.flush()
    assert rec.puts == [(0, b"a", b"2"), (0, b"old", None), (1, b"a", b"thunk")]
    out.flush()
    assert len(rec.puts) == 3


def _policies() -> Policies:
    return Policies(parse_config({"delivery": {"smarthost": "127.0.0.1:2525"}}, env={}))


def test_a_message_accepted_and_promoted_at_once_costs_one_state_write() -> None:
    stage = QueueStage(_policies())
    stage.assigned(0, {})
    msg = fixtures.accepted().model_copy(update={"send_at": None})
    rec = Recorder()
    stage.on_record(0, ACCEPTED.name, route_key(msg.tenant, msg.queue).encode(), encode(msg), fixtures.T0, rec)
    writes = [p for p in rec.puts if p[1] == Message(msg.id).key()]
    assert len(writes) == 1  # 'ready', not 'scheduled' then 'ready'
    assert (READY.name, stage.policies.group_of("unspecified").encode()) in rec.sent


def test_a_message_held_and_released_at_once_leaves_no_held_entry() -> None:
    stage = EgressStage(_policies(), partitions=1)
    now = fixtures.T0
    rec = Recorder()
    stage.assigned(0, {})
    stage.on_tick(now, rec)  # settle the egress grouping: the partition hears its own marker
    marker = EgressSettlement(fingerprint=stage.policies.grouping, partitions=(0,))
    stage.on_record(0, READY.name, b"0", encode(marker), now, rec)
    ready = fixtures.ready().model_copy(update={"egress_pool": "unspecified", "expires_at": now.replace(year=2027)})
    rec = Recorder()
    stage.on_record(0, READY.name, b"unspecified", encode(ready), now, rec)
    assert [key for _, key, _ in rec.puts if key.startswith(b"h:")] == []
    assert stage.held_count() == 0
    assert any(topic == "mail.delivery" for topic, _ in rec.sent)


def test_packed_values_deflate_at_pack_and_never_encode_a_value_replaced_first() -> None:
    from mailstream.scheduler.packed import PackedValues

    calls: list[str] = []

    def thunk(value: bytes) -> Callable[[], bytes]:
        def make() -> bytes:
            calls.append(value.decode())
            return value

        return make

    packed = PackedValues()
    packed["a"] = thunk(b"first")
    packed["a"] = thunk(b"second")
    packed["b"] = b"held and released"
    del packed["b"]
    assert "a" in packed
    assert "b" not in packed
    assert len(packed) == 1
    packed.pack()
    assert calls == ["second"]
    assert packed["a"] == b"second"
    packed["a"] = b"third"  # replaces the packed value
    assert list(packed) == ["a"]
    assert packed["a"] == b"third"
    packed.pack()
    del packed["a"]
    assert len(packed) == 0
