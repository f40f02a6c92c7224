"""Every record type round-trips and what is not one of its records is refused (evolution: test_schema_evolution)."""

from __future__ import annotations

import pytest

from mailstream.events import fixtures, serde
from mailstream.events.records import DeliveryTask, Record, TransactionStatus


@pytest.mark.parametrize("record", fixtures.ALL, ids=lambda r: r.schema_name)
def test_round_trip(record: Record) -> None:
    data = serde.encode(record)
    assert data[:2] == b"\xc3\x01"
    assert serde.decode(data, type(record)) == record


@pytest.mark.parametrize("bad", [None, b"", b"\x00\x01" + b"x" * 20, b"\xc3\x01" + b"\xff" * 8 + b"x"])
def test_garbage_is_refused(bad: bytes | None) -> None:
    with pytest.raises(serde.SerdeError):
        serde.decode(bad, DeliveryTask)


def test_wrong_record_type_is_refused() -> None:
    with pytest.raises(serde.SerdeError):
        serde.decode(serde.encode(fixtures.task()), TransactionStatus)
