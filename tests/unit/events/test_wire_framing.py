"""Both framings of a record (pure): single-object (C3 01 + fingerprint) and the Confluent wire format (00 + schema
id), told apart by the first bytes, read by every reader whatever the mix on a topic; ids from an in-memory table
here (the registry itself: tests/integration/test_schema_registry.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from fastavro import parse_schema, schemaless_reader

from mailstream.delivery.unreadable import salvage
from mailstream.events import serde
from mailstream.events.fixtures import log_record, status
from mailstream.events.fixtures import task as delivery_task
from mailstream.events.records import DeliveryTask, LogRecord, ReadyMessage, TransactionStatus
from mailstream.events.serde import SerdeError, decode, encode, framing, schema_name, use_wire_format
from mailstream.events.topics import EVENTS, READY
from mailstream.events.wire import subjects
from mailstream.ingest.read_model.projection import peek_status


class Ids:
    """serde.WireIds over a dict, as RegistryIds is over the registry."""

    def __init__(self, writer: dict[str, int], schemas: dict[int, str]) -> None:
        self.writer, self.schemas, self.asked = writer, schemas, 0

    def writer_id(self, schema_name: str) -> int | None:
        return self.writer.get(schema_name)

    def fingerprint(self, schema_id: int) -> bytes:
        self.asked += 1
        if schema_id not in self.schemas:
            raise SerdeError(f"no schema {schema_id}")
        return serde.registry().learn(self.schemas[schema_id])


@pytest.fixture
def wire() -> Iterator[Ids]:
    src = serde.registry().sources
    ids = Ids(
        {"mailstream.LogRecord": 7, "mailstream.TransactionStatus": 8, "mailstream.DeliveryTask": 9},
        {7: src["mailstream.LogRecord"], 8: src["mailstream.TransactionStatus"], 9: src["mailstream.DeliveryTask"]},
    )
    known = dict(serde.registry().by_fingerprint)
    use_wire_format(ids)
    yield ids
    use_wire_format(None)
    serde.registry().by_fingerprint = known  # a schema learned here is forgotten: other tests see the shipped set


def test_the_first_bytes_decide_the_framing() -> None:
    single = encode(log_record())
    assert single[:2] == b"\xc3\x01"
    assert framing(single) == "single-object"
    assert framing(b"\x00\x00\x00\x00\x07" + single[10:]) == "confluent"
    assert framing(b"\x00\x00\x00\x07") is None  # shorter than the 5-byte header
    assert framing(b"\xc3\x01\x00") is None  # shorter than the 10-byte header
    assert framing(b'{"json": 1}') is None
    assert framing(b"") is None
    assert framing(None) is None


def test_with_ids_records_are_written_in_the_confluent_wire_format(wire: Ids) -> None:
    rec = log_record()
    confluent = encode(rec)
    assert confluent[:5] == b"\x00\x00\x00\x00\x07"  # magic 0, id 7 big-endian
    use_wire_format(None)
    single = encode(rec)
    use_wire_format(wire)
    assert confluent[5:] == single[10:]  # the same Avro body under either header
    schema = parse_schema(json.loads(serde.registry().sources["mailstream.LogRecord"]))
    datum = schemaless_reader(io.BytesIO(confluent[5:]), schema, None)  # what any Avro reader does with it
    assert isinstance(datum, dict)
    assert datum["id"] == rec.id


def test_a_type_without_an_id_stays_single_object(wire: Ids) -> None:
    assert framing(encode(delivery_task())) == "confluent"
    del wire.writer["mailstream.DeliveryTask"]
    assert framing(encode(delivery_task())) == "single-object"


def test_a_topic_that_switched_framing_mid_way_reads_through(wire: Ids) -> None:
    recs = [log_record().model_copy(update={"id": f"tx-{i}"}) for i in range(4)]
    mixed = []
    for i, rec in enumerate(recs):
        use_wire_format(wire if i % 2 else None)
        mixed.append(encode(rec))
    use_wire_format(wire)
    assert [framing(m) for m in mixed] == ["single-object", "confluent", "single-object", "confluent"]
    assert [EVENTS.decode(m) for m in mixed] == recs
    assert [schema_name(m) for m in mixed] == ["mailstream.LogRecord"] * 4
    assert all(EVENTS.carries(m) for m in mixed)


def test_a_confluent_record_without_a_registry_is_refused_saying_why(wire: Ids) -> None:
    data = encode(log_record())
    use_wire_format(None)
    with pytest.raises(SerdeError, match=r"schema id 7.*kafka\.schema_registry"):
        decode(data, LogRecord)
    assert schema_name(data) is None
    assert not EVENTS.carries(data)
    with pytest.raises(SerdeError, match=r"kafka\.schema_registry"):
        EVENTS.decode(data)


def test_an_id_the_registry_does_not_know_is_a_serde_error(wire: Ids) -> None:
    with pytest.raises(SerdeError, match="no schema 99"):
        decode(b"\x00\x00\x00\x00\x63" + b"\x00" * 20, LogRecord)


def test_a_newer_writer_schema_from_the_registry_is_resolved_into_the_current_type(wire: Ids) -> None:
    newer = json.loads(serde.registry().sources["mailstream.LogRecord"])
    newer["fields"].append({"name": "added_later", "type": "string", "default": ""})
    wire.schemas[42] = json.dumps(newer)
    rec = log_record()
    body = encode(rec)[5:] + b"\x06abc"  # the new field, written last: "abc"
    assert decode(b"\x00\x00\x00\x00\x2a" + body, LogRecord) == rec
    assert wire.asked == 1


def test_the_wrong_type_under_confluent_framing_is_refused(wire: Ids) -> None:
    with pytest.raises(SerdeError, match=r"mail\.ready carries .*not mailstream\.LogRecord"):
        READY.decode(encode(log_record()))
    with pytest.raises(SerdeError, match=r"expected mailstream\.ReadyMessage, got mailstream\.LogRecord"):
        decode(encode(log_record()), ReadyMessage)


def test_the_readers_that_peek_into_records_take_both_framings(wire: Ids) -> None:
    st = status()
    for ids in (None, wire):
        use_wire_format(ids)
        assert peek_status(encode(st)) == (st.id, st.version)
        task = delivery_task()
        found = salvage(encode(task))
        assert found is not None
        assert found["id"] == task.id
    assert isinstance(decode(encode(st), TransactionStatus), TransactionStatus)
    assert isinstance(decode(encode(delivery_task()), DeliveryTask), DeliveryTask)


def test_subjects_follow_the_topic_name_strategy_for_single_type_topics() -> None:
    named = subjects([EVENTS, READY])
    assert named == {"mail.events-value": "mailstream.LogRecord"}  # mail.ready carries five types: no subject
