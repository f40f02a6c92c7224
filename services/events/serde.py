"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) with fastavro; no registry needed.

Readers resolve the writer's schema by fingerprint, so a record written with an older
version of a schema (kept under `schemas/history/`) is read into the current record type.
The schemas ship inside the package (`mailstream/events/schemas/`; the checkout's top-level
`schemas` links there), so an installed wheel finds them.
"""

from __future__ import annotations

import io
import os
from functools import cache
from pathlib import Path
from typing import TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from fastavro.types import Schema

from mailstream.events.records import Record

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10
R = TypeVar("R", bound=Record)


class SerdeError(ValueError):
    """Bytes that are not a single-object-encoded record of a known schema."""


def schemas_dir() -> Path:
    override = os.environ.get("MAILSTREAM_SCHEMAS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "schemas"


class SchemaRegistry:
    """Every schema version this process can read, by fingerprint; the newest one per name writes."""

    def __init__(self, directory: Path) -> None:
        self.current: dict[str, tuple[bytes, Schema]] = {}
        self.by_fingerprint: dict[bytes, tuple[str, Schema]] = {}
        for path in sorted(directory.glob("*.avsc")):
            schema = load_schema(str(path), _write_hint=False)
            fp = self._register(schema)
            self.current[path.stem] = (fp, schema)
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

    def parse(self) -> None:
        """Mark every schema parsed: unmarked, fastavro parses the schema again on every record (half the cost)."""
        self.current = {name: (fp, parse_schema(schema)) for name, (fp, schema) in self.current.items()}
        self.by_fingerprint = {fp: (name, parse_schema(schema)) for fp, (name, schema) in self.by_fingerprint.items()}


@cache
def registry() -> SchemaRegistry:
    reg = SchemaRegistry(schemas_dir())
    reg.parse()
    return reg


def encode(record: Record) -> bytes:
    fp, schema = registry().current[record.schema_name]
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(fp)
    schemaless_writer(buf, schema, record.to_avro())
    return buf.getvalue()


def schema_name(data: bytes | None) -> str | None:
    """Name of the schema a single-object-encoded record was written with (None: not one we know)."""
    if data is None or len(data) < HEADER_SIZE or data[:2] != MAGIC:
        return None
    known = registry().by_fingerprint.get(data[2:HEADER_SIZE])
    return known[0] if known is not None else None


def decode(data: bytes | None, record_type: type[R]) -> R:
    if data is None or len(data) < HEADER_SIZE or data[:2] != MAGIC:
        raise SerdeError(f"not an Avro single-object encoded {record_type.schema_name}")
    reg = registry()
    known = reg.by_fingerprint.get(data[2:HEADER_SIZE])
    if known is None:
        raise SerdeError(f"unknown schema fingerprint {data[2:HEADER_SIZE].hex()} for {record_type.schema_name}")
    writer_name, writer = known
    if writer_name != record_type.schema_name:
        raise SerdeError(f"expected {record_type.schema_name}, got {writer_name}")
    current_fp, reader = reg.current[record_type.schema_name]
    try:
        # Same version: no schema resolution needed.
        datum = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), writer,
                                  None if current_fp == data[2:HEADER_SIZE] else reader)
    except (EOFError, ValueError, IndexError, TypeError) as exc:
        raise SerdeError(f"corrupt {record_type.schema_name}: {exc}") from exc
    if not isinstance(datum, dict):
        raise SerdeError(f"{record_type.schema_name} is not a record")
    try:
        return record_type.from_avro(datum)
    except ValueError as exc:
        raise SerdeError(f"{record_type.schema_name}: {exc}") from exc
