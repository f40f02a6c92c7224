"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) with fastavro; no registry needed.
With a schema registry configured (`kafka.schema_registry`, mailstream.events.wire), records whose schema it
has an id for are written in the Confluent wire format instead (00 + 4-byte big-endian schema id + the same
body). Every reader takes both, decided by the first bytes, so a topic may switch framing mid-way.

Readers resolve the writer's schema by fingerprint, so a record written with an older
version of a schema (kept under `schemas/history/`) is read into the current record type.
Records of a current schema go through closures compiled from it (`codec`), several times faster than
fastavro's interpretation of the schema; fastavro writes and reads whatever those do not handle, and
resolves older writer schemas. The schemas ship inside the package (`mailstream/events/schemas/`; the
checkout's top-level `schemas` links there), so an installed wheel finds them.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from fastavro.types import Schema

from mailstream.events.codec import compile_schema
from mailstream.events.records import Record

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_SIZE = 5
R = TypeVar("R", bound=Record)
Framing = Literal["single-object", "confluent"]


class SerdeError(ValueError):
    """Bytes that are not an Avro record of a known schema in either framing."""


class WireIds(Protocol):
    """The schema registry's ids, for the Confluent wire format (mailstream.events.wire.RegistryIds)."""

    def writer_id(self, schema_name: str) -> int | None:
        """The id to write records of this schema with; None: single-object encoding for them."""

    def fingerprint(self, schema_id: int) -> bytes:
        """The CRC-64-AVRO fingerprint of the schema with this id (asking the registry once);
        SerdeError if the registry has no such schema or cannot be asked."""


_wire: WireIds | None = None


def use_wire_format(ids: WireIds | None) -> None:
    """Write in the Confluent wire format the records `ids` has a writer id for, and read that format's
    records through `ids` (None: single-object encoding only, the default). Set once at start-up."""
    global _wire
    _wire = ids


def framing(data: bytes | None) -> Framing | None:
    """Which framing the bytes are in, by their first bytes; None: neither (or too short for a header)."""
    if data is None:
        return None
    if len(data) >= HEADER_SIZE and data[:2] == MAGIC:
        return "single-object"
    if len(data) >= CONFLUENT_HEADER_SIZE and data[0] == CONFLUENT_MAGIC:
        return "confluent"
    return None


def confluent_id(data: bytes) -> int:
    return int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big")


def writer_of(data: bytes | None) -> tuple[bytes, int] | None:
    """(fingerprint of the writer's schema, offset of the Avro body) in either framing; None if neither.
    SerdeError for a Confluent-framed record when no registry is configured or it cannot say the schema."""
    kind = framing(data)
    if kind is None or data is None:
        return None
    if kind == "single-object":
        return data[2:HEADER_SIZE], HEADER_SIZE
    schema_id = confluent_id(data)
    if _wire is None:
        raise SerdeError(
            f"a record in the Confluent wire format (schema id {schema_id}): set kafka.schema_registry to read it"
        )
    return _wire.fingerprint(schema_id), CONFLUENT_HEADER_SIZE


def schemas_dir() -> Path:
    override = os.environ.get("MAILSTREAM_SCHEMAS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "schemas"


class SchemaRegistry:
    """Every schema version this process can read, by fingerprint; the newest one per name writes."""

    def __init__(self, directory: Path) -> None:
        self.current: dict[str, tuple[bytes, Schema]] = {}
        self.compiled: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes, int], dict[str, Any]]]] = {}
        self.by_fingerprint: dict[bytes, tuple[str, Schema]] = {}
        self.sources: dict[str, str] = {}  # name -> the current schema as JSON, named types inlined (registries)
        for path in sorted(directory.glob("*.avsc")):
            schema = load_schema(str(path), _write_hint=False)
            fp = self._register(schema)
            self.current[path.stem] = (fp, schema)
            self.sources[path.stem] = json.dumps(schema, separators=(",", ":"))
        history = directory / "history"
        if history.is_dir():
            for path in sorted(history.glob("*/*.avsc")):  # a version's named types come from its own folder
                self._register(load_schema(str(path), _write_hint=False), replace=False)

    def _register(self, schema: Schema, *, replace: bool = True) -> bytes:
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        name = schema["name"] if isinstance(schema, dict) else str(schema)
        if replace or fp not in self.by_fingerprint:  # a kept copy of a current schema: the current file reads
            self.by_fingerprint[fp] = (name, schema)
        return fp

    def learn(self, text: str) -> bytes:
        """A writer's schema this process does not ship (a newer version, from the registry): its fingerprint,
        kept so records written with it are resolved into the current record type. SerdeError if unusable."""
        try:
            raw = json.loads(text)
            fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
            schema = parse_schema(raw, _write_hint=False)
        except Exception as exc:  # not JSON, not Avro: fastavro's several error types
            raise SerdeError(f"a registry schema that is not Avro: {exc}") from None
        if fp not in self.by_fingerprint:
            name = schema["name"] if isinstance(schema, dict) else str(schema)
            self.by_fingerprint[fp] = (name, schema)
        return fp

    def parse(self) -> None:
        """Mark every schema parsed: unmarked, fastavro parses the schema again on every record (half the cost)."""
        self.current = {name: (fp, parse_schema(schema)) for name, (fp, schema) in self.current.items()}
        self.by_fingerprint = {fp: (name, parse_schema(schema)) for fp, (name, schema) in self.by_fingerprint.items()}
        for name, (_, schema) in self.current.items():
            codec = compile_schema(schema)
            if codec is not None:
                self.compiled[name] = codec


@cache
def registry() -> SchemaRegistry:
    reg = SchemaRegistry(schemas_dir())
    reg.parse()
    return reg


def encode(record: Record) -> bytes:
    reg = registry()
    fp, schema = reg.current[record.schema_name]
    schema_id = _wire.writer_id(record.schema_name) if _wire is not None else None
    header = MAGIC + fp if schema_id is None else bytes((CONFLUENT_MAGIC,)) + schema_id.to_bytes(4, "big")
    compiled = reg.compiled.get(record.schema_name)
    if compiled is not None:
        try:
            return header + compiled[0](record)
        except Exception:  # a datum the closures do not take: fastavro writes it, or says why not
            pass
    buf = io.BytesIO()
    buf.write(header)
    schemaless_writer(buf, schema, record.to_avro())
    return buf.getvalue()


def schema_name(data: bytes | None) -> str | None:
    """Name of the schema a record was written with, in either framing (None: not one we know)."""
    try:
        found = writer_of(data)
    except SerdeError:
        return None
    known = registry().by_fingerprint.get(found[0]) if found is not None else None
    return known[0] if known is not None else None


def decode(data: bytes | None, record_type: type[R]) -> R:
    found = writer_of(data)
    if found is None or data is None:
        raise SerdeError(f"not an Avro {record_type.schema_name} (neither single-object nor Confluent framing)")
    writer_fp, start = found
    reg = registry()
    known = reg.by_fingerprint.get(writer_fp)
    if known is None:
        raise SerdeError(f"unknown schema fingerprint {writer_fp.hex()} for {record_type.schema_name}")
    writer_name, writer = known
    if writer_name != record_type.schema_name:
        raise SerdeError(f"expected {record_type.schema_name}, got {writer_name}")
    current_fp, reader = reg.current[record_type.schema_name]
    same = current_fp == writer_fp
    datum: object = _compiled_read(reg, record_type.schema_name, data, start) if same else None
    if datum is None:
        try:
            # Same version: no schema resolution needed.
            datum = schemaless_reader(io.BytesIO(data[start:]), writer, None if same else reader)
        except (EOFError, ValueError, IndexError, TypeError) as exc:
            raise SerdeError(f"corrupt {record_type.schema_name}: {exc}") from exc
    if not isinstance(datum, dict):
        raise SerdeError(f"{record_type.schema_name} is not a record")
    try:
        return record_type.from_avro(datum)
    except ValueError as exc:
        raise SerdeError(f"{record_type.schema_name}: {exc}") from exc


def _compiled_read(reg: SchemaRegistry, name: str, data: bytes, start: int) -> dict[str, Any] | None:
    """The datum read by the compiled closures; None if there are none or they cannot (fastavro's turn)."""
    compiled = reg.compiled.get(name)
    if compiled is None:
        return None
    try:
        return compiled[1](data, start)
    except Exception:  # corrupt, or outside the closures: fastavro reads it, or says why not
        return None
