"""Avro binary encoding of this project's schemas, compiled once per schema into plain Python closures.

fastavro interprets the schema on every record: ~1.5 µs per optional string and ~3 µs per optional
timestamp, 20–30 µs for one TransactionStatus, which made Avro the largest cost of the scheduler.
The closures here write and read the same bytes (Avro's binary encoding is canonical: one encoding
per datum; `tests/unit/events/test_codec.py` compares both on every record type) for the subset of Avro
these schemas use: records, enums, arrays, maps, strings, bytes, booleans, int/long, timestamp-millis and
unions of null with one other type. A schema outside it compiles to None, and any datum a closure
cannot handle raises, so `serde` hands that record to fastavro, whose behaviour and errors stay.

Encoders read a record's model attributes directly (no `model_dump`); decoders return the dict
fastavro would, for the record type's own validation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

Parts = Callable[[bytes], object]  # list.append of the encoded pieces
Encoder = Callable[[Parts, Any], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unsupported(Exception):
    """A schema or datum outside what the closures handle: fastavro's turn."""


def zigzag(n: int) -> bytes:
    """A long as Avro writes it: zig-zag, then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = [bytes((z,)) for z in range(0x80)]


def read_long(b: bytes, p: int) -> tuple[int, int]:
    x = b[p]
    p += 1
    if x < 0x80:
        return (x >> 1) ^ -(x & 1), p
    n, shift = x & 0x7F, 7
    while True:
        x = b[p]
        p += 1
        n |= (x & 0x7F) << shift
        if x < 0x80:
            return (n >> 1) ^ -(n & 1), p
        shift += 7


def _write_long(a: Parts, x: int) -> None:
    if type(x) is not int:
        raise Unsupported(f"{type(x).__name__} for a long")
    a(zigzag(x))


def _write_string(a: Parts, x: str) -> None:
    data = x.encode()
    a(zigzag(len(data)))
    a(data)


def _write_bytes(a: Parts, x: bytes) -> None:
    if type(x) is not bytes:
        raise Unsupported(f"{type(x).__name__} for bytes")
    a(zigzag(len(x)))
    a(x)


def _write_millis(a: Parts, x: datetime) -> None:
    if type(x) is not datetime or x.tzinfo is None:
        raise Unsupported("a naive or non-datetime timestamp")  # fastavro reads naive ones as local time
    delta = x - EPOCH
    a(zigzag((delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000))


def _read_string(b: bytes, p: int) -> tuple[str, int]:
    n, p = read_long(b, p)
    end = p + n
    if n < 0 or end > len(b):
        raise Unsupported("a string past the end")
    return b[p:end].decode(), end


def _read_bytes(b: bytes, p: int) -> tuple[bytes, int]:
    n, p = read_long(b, p)
    end = p + n
    if n < 0 or end > len(b):
        raise Unsupported("bytes past the end")
    return b[p:end], end


def _write_boolean(a: Parts, x: bool) -> None:
    if type(x) is not bool:
        raise Unsupported(f"{type(x).__name__} for a boolean")
    a(b"\x01" if x else b"\x00")


def _read_boolean(b: bytes, p: int) -> tuple[bool, int]:
    if p >= len(b) or b[p] > 1:
        raise Unsupported("not a boolean")  # Avro writes one byte, 0 or 1
    return b[p] == 1, p + 1


def _read_millis(b: bytes, p: int) -> tuple[datetime, int]:
    ms, p = read_long(b, p)
    return EPOCH + timedelta(milliseconds=ms), p


_PRIMITIVES: dict[str, tuple[Encoder, Decoder]] = {
    "int": (_write_long, read_long),
    "long": (_write_long, read_long),
    "string": (_write_string, _read_string),
    "bytes": (_write_bytes, _read_bytes),
    "boolean": (_write_boolean, _read_boolean),
}


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, tuple[Encoder, Decoder]] = {}  # by full name, as fastavro's parsed schema names them

    def type_of(self, schema: Any) -> tuple[Encoder, Decoder]:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            if schema in self.named:
                return self.named[schema]
            raise Unsupported(f"type {schema}")
        if isinstance(schema, list):
            return self.union(schema)
        kind = schema["type"]
        if schema.get("logicalType") == "timestamp-millis" and kind == "long":
            return _write_millis, _read_millis
        if kind == "record":
            return self.record(schema)
        if kind == "enum":
            return self.enum(schema)
        if kind == "array":
            return self.array(schema["items"])
        if kind == "map":
            return self.map(schema["values"])
        if isinstance(kind, str) and "logicalType" not in schema:
            return self.type_of(kind)
        raise Unsupported(f"type {kind} ({schema.get('logicalType')})")

    def record(self, schema: dict[str, Any]) -> tuple[Encoder, Decoder]:
        fields: list[tuple[str, Encoder, Decoder]] = []

        def write(a: Parts, x: Any) -> None:
            d = x.__dict__
            for name, w, _ in fields:
                w(a, d[name])

        def read(b: bytes, p: int) -> tuple[dict[str, Any], int]:
            datum = {}
            for name, _, r in fields:
                datum[name], p = r(b, p)
            return datum, p

        self.named[schema["name"]] = write, read  # before its fields: a field may name it
        fields.extend((f["name"], *self.type_of(f["type"])) for f in schema["fields"])
        return write, read

    def enum(self, schema: dict[str, Any]) -> tuple[Encoder, Decoder]:
        symbols = tuple(schema["symbols"])
        index = {s: zigzag(i) for i, s in enumerate(symbols)}

        def write(a: Parts, x: str) -> None:
            a(index[x])  # KeyError: not a symbol, for fastavro to refuse

        def read(b: bytes, p: int) -> tuple[str, int]:
            i, p = read_long(b, p)
            if not 0 <= i < len(symbols):
                raise Unsupported(f"enum index {i}")
            return symbols[i], p

        self.named[schema["name"]] = write, read
        return write, read

    def array(self, items: Any) -> tuple[Encoder, Decoder]:
        w, r = self.type_of(items)

        def write(a: Parts, x: Any) -> None:
            if not isinstance(x, list | tuple):
                raise Unsupported(f"{type(x).__name__} for an array")
            if x:
                a(zigzag(len(x)))
                for item in x:
                    w(a, item)
            a(b"\x00")

        def read(b: bytes, p: int) -> tuple[list[Any], int]:
            out: list[Any] = []
            while True:
                n, p = read_long(b, p)
                if n == 0:
                    return out, p
                if n < 0:  # a block with its size in bytes
                    n = -n
                    _, p = read_long(b, p)
                for _ in range(n):
                    item, p = r(b, p)
                    out.append(item)

        return write, read

    def map(self, values: Any) -> tuple[Encoder, Decoder]:
        w, r = self.type_of(values)

        def write(a: Parts, x: Any) -> None:
            if not isinstance(x, dict):
                raise Unsupported(f"{type(x).__name__} for a map")
            if x:
                a(zigzag(len(x)))
                for key, value in x.items():
                    _write_string(a, key)
                    w(a, value)
            a(b"\x00")

        def read(b: bytes, p: int) -> tuple[dict[str, Any], int]:
            out: dict[str, Any] = {}
            while True:
                n, p = read_long(b, p)
                if n == 0:
                    return out, p
                if n < 0:
                    n = -n
                    _, p = read_long(b, p)
                for _ in range(n):
                    key, p = _read_string(b, p)
                    out[key], p = r(b, p)

        return write, read

    def union(self, branches: list[Any]) -> tuple[Encoder, Decoder]:
        if len(branches) != 2 or "null" not in branches:
            raise Unsupported("a union other than null and one type")
        null_at = branches.index("null")
        other = branches[1 - null_at]
        if isinstance(other, dict) and other.get("type") in ("array", "map"):
            raise Unsupported("a union with a container (fastavro reads a tuple there as its notation)")
        w, r = self.type_of(other)
        null_tag, value_tag, value_at = zigzag(null_at), zigzag(1 - null_at), 1 - null_at

        def write(a: Parts, x: Any) -> None:
            if x is None:
                a(null_tag)
            else:
                a(value_tag)
                w(a, x)

        def read(b: bytes, p: int) -> tuple[Any, int]:
            i, p = read_long(b, p)
            if i == value_at:
                return r(b, p)
            if i == null_at:
                return None, p
            raise Unsupported(f"union index {i}")

        return write, read


def compile_schema(parsed: Any) -> tuple[Callable[[Any], bytes], Callable[[bytes, int], dict[str, Any]]] | None:
    """(encode a record model to Avro bytes, decode the Avro bytes from an offset on to the datum dict) for
    a schema as fastavro's `parse_schema` returns it; None if it uses what the closures do not handle."""
    try:
        write, read = _Compiler().type_of(parsed)
    except Unsupported:
        return None

    def encode(record: Any) -> bytes:
        parts: list[bytes] = []
        write(parts.append, record)
        return b"".join(parts)

    def decode(data: bytes, start: int) -> dict[str, Any]:
        datum, _ = read(data, start)  # like fastavro, what follows the datum is not looked at
        if not isinstance(datum, dict):
            raise Unsupported("not a record")
        return datum

    return encode, decode
