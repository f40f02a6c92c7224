"""The compiled codec writes exactly fastavro's bytes and reads exactly fastavro's datum, for every record
type, and hands what it does not take to fastavro (whose errors are the ones callers see)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from mailstream.events import fixtures
from mailstream.events.codec import read_long, zigzag
from mailstream.events.records import (
    AcceptedMessage,
    LimitState,
    LogRecord,
    Record,
    SmtpResponse,
    TransactionStatus,
)
from mailstream.events.serde import HEADER_SIZE, MAGIC, SerdeError, decode, encode, registry

T = datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC)


def variants() -> list[Record]:
    """Every fixture, and values at the edges: empty and absent optionals, non-ASCII, long strings,
    large and negative numbers, timestamps before 1970 and in other zones, many array items."""
    status = fixtures.status()
    return [
        *fixtures.ALL,
        status.model_copy(
            update={
                "tenant": None,
                "campaign": None,
                "attempts": (),
                "final_reason": None,
                "egress_pool": "é" * 300,
                "next_attempt_at": T,
                "bounce_type": "hard",
            }
        ),
        status.model_copy(update={"attempts": status.attempts * 70, "version": 2**40, "num_attempts": -3}),
        fixtures.accepted().model_copy(
            update={
                "headers": {},
                "metadata": {f"k{i}": "ü" * i for i in range(200)},
                "priority": None,
                "send_at": None,
                "received_at": datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
            }
        ),
        fixtures.accepted().model_copy(update={"received_at": T.astimezone(timezone(timedelta(hours=-7)))}),
        LimitState(sends=tuple(T + timedelta(milliseconds=i) for i in range(300)), tat=T, rr_index=-1),
        LogRecord.model_validate({**fixtures.log_record().model_dump(), "meta": {"a": "😀", "": ""}}),
        SmtpResponse(code=-(2**62), content=""),
        fixtures.body().model_copy(update={"data": bytes(range(256)) * 40}),
    ]


def fastavro_bytes(record: Record) -> bytes:
    fp, schema = registry().current[record.schema_name]
    buf = io.BytesIO()
    schemaless_writer(buf, schema, record.to_avro())
    return MAGIC + fp + buf.getvalue()


@pytest.mark.parametrize("record", variants(), ids=lambda r: type(r).__name__)
def test_bytes_and_datum_are_fastavros(record: Record) -> None:
    reg = registry()
    assert record.schema_name in reg.compiled, "every current schema compiles"
    raw = encode(record)
    assert raw == fastavro_bytes(record)
    assert reg.compiled[record.schema_name][0](record) == raw[HEADER_SIZE:]
    _, schema = reg.current[record.schema_name]
    datum = schemaless_reader(io.BytesIO(raw[HEADER_SIZE:]), schema, None)
    assert isinstance(datum, dict)
    assert reg.compiled[record.schema_name][1](raw, HEADER_SIZE) == datum
    assert decode(raw, type(record)) == type(record).from_avro(datum)  # (timestamps keep milliseconds)


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, 8191, -8192, 2**31, -(2**31), 2**62, -(2**63)])
def test_longs_round_trip(n: int) -> None:
    assert read_long(zigzag(n), 0) == (n, len(zigzag(n)))


def test_what_the_closures_refuse_is_fastavros_to_refuse() -> None:
    naive = fixtures.accepted().model_construct(**{**dict(fixtures.accepted()), "received_at": T.replace(tzinfo=None)})
    assert encode(naive) == fastavro_bytes(naive)  # fastavro's reading of a naive time, not a guess of ours
    bad: Any = fixtures.status().model_construct(**{**dict(fixtures.status()), "status": "delivred"})
    with pytest.raises(ValueError, match="delivred"):
        encode(bad)


def test_corrupt_bytes_are_a_serde_error_as_before() -> None:
    raw = encode(fixtures.status())
    not_utf8 = raw[: HEADER_SIZE + 1] + b"\xff\xfe" + raw[HEADER_SIZE + 3 :]
    for broken in (raw[:-5], raw[:HEADER_SIZE] + b"\xff" * 8, not_utf8):
        with pytest.raises(SerdeError):
            decode(broken, TransactionStatus)
    assert decode(raw + b"trailing", TransactionStatus) == fixtures.status()  # as fastavro: not looked at
    with pytest.raises(SerdeError):
        decode(encode(fixtures.accepted()), TransactionStatus)
    assert isinstance(decode(encode(fixtures.accepted()), AcceptedMessage), AcceptedMessage)
