"""A record on mail.delivery that cannot be decoded: set aside in mail.dead-letter as the scheduler's stages
do (the record as it was, the error and its origin in headers), in the transaction that commits its offset,
so the worker goes on with the records after it and the record is kept for an operator.

Its transaction would stay `in_delivery` for ever, since no response ends the attempt. So when the fields a
response needs can still be read from the front of the record (a record cut short or damaged towards its
end, in a schema this worker knows), the worker also answers the attempt `451 4.3.0`: the scheduler
defers the message and sends it again with a freshly written task. When they cannot (not a record of ours
at all, or an unknown schema), docs/operations.md says what an operator does.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from mailstream.events.kafka import Consumed
from mailstream.events.serde import SerdeError, registry, writer_of
from mailstream.events.topics import DEAD_LETTER
from mailstream.events.transactions import Outgoing

UNREADABLE = Counter(
    "mailstream_delivery_unreadable_tasks_total",
    "Records on mail.delivery that could not be decoded, set aside in mail.dead-letter; by whether the "
    "attempt could still be answered",
    ["answered"],
)
PROCESSOR = "delivery"
# What a response needs, all at the front of mailstream.DeliveryTask: the attempt and the route key.
NEEDED = ("id", "attempt", "attempt_id", "queue", "egress_source", "egress_path", "tenant")


def dead_letter(record: Consumed, error: str) -> Outgoing:
    headers = (
        ("error", error),
        ("topic", record.topic),
        ("partition", str(record.partition)),
        ("offset", str(record.offset)),
        ("processor", PROCESSOR),
    )
    return Outgoing(DEAD_LETTER.name, record.key or b"", record.value, headers)


class _Cut(Exception):
    """The record ends, or holds something other than the schema says, before the fields needed."""


class _Reader:
    def __init__(self, data: bytes, at: int) -> None:
        self._data, self._at = data, at

    def long(self) -> int:
        shift = result = 0
        while True:
            if self._at >= len(self._data) or shift > 63:
                raise _Cut
            byte = self._data[self._at]
            self._at += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)  # zigzag

    def string(self) -> str:
        length = self.long()
        if length < 0 or self._at + length > len(self._data):
            raise _Cut
        raw = self._data[self._at : self._at + length]
        self._at += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Cut from None

    def value(self, kind: Any) -> object:
        if kind in ("string", "int", "long"):
            return self.string() if kind == "string" else self.long()
        if isinstance(kind, list) and len(kind) == 2 and "null" in kind:  # an optional field
            index = self.long()
            if index not in (0, 1):
                raise _Cut
            chosen = kind[index]
            return None if chosen == "null" else self.value(chosen)
        raise _Cut


def salvage(data: bytes) -> dict[str, Any] | None:
    """The fields in NEEDED, read from the front of a record that fails to decode as a whole; None if the
    record is not a DeliveryTask in a known schema or ends (or goes wrong) before them."""
    try:
        writer = writer_of(data)
    except SerdeError:
        return None
    known = registry().by_fingerprint.get(writer[0]) if writer is not None else None
    if writer is None or known is None or known[0] != "mailstream.DeliveryTask":
        return None
    schema: dict[str, Any] = known[1]  # type: ignore[assignment]  # a record schema, as fastavro parses it
    fields: list[dict[str, Any]] = schema["fields"]
    reader, found = _Reader(data, writer[1]), {}
    try:
        for spec in fields:
            found[spec["name"]] = reader.value(spec["type"])
            if all(name in found for name in NEEDED):
                return {name: found[name] for name in NEEDED}
    except _Cut:
        return None
    return None
