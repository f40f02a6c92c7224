"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) with fastavro; no registry needed.

Readers resolve the writer's schema by fingerprint, so a record written with an older
version of a schema (kept under `schemas/history/`) is read into the current record type.
Records of a current schema go through closures compiled from it (`codec`), several times faster than
fastavro's interpretation of the schema; fastavro writes and reads whatever those do not handle, and
resolves older writer schemas. The schemas ship inside the package (`mailstream/events/schemas/`; the
checkout's top-level `schemas` links there), so an installed wheel finds them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from fastavro.types import Schema

from mailstream.events.codec import compile_schema
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
        self.compiled: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes, int], dict[str, Any]]]] = {}
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
    compiled = reg.compiled.get(record.schema_name)
    if compiled is not None:
        try:
            return MAGIC + fp + compiled[0](record)
        except Exception:  # a datum the closures do not take: fastavro writes it, or says why not
            pass
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
    same = current_fp == data[2:HEADER_SIZE]
    datum: object = _compiled_read(reg, record_type.schema_name, data) if same else None
    if datum is None:
        try:
            # Same version: no schema resolution needed.
            datum = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), writer, None if same else reader)
        except (EOFError, ValueError, IndexError, TypeError) as exc:
            raise SerdeError(f"corrupt {record_type.schema_name}: {exc}") from exc
    if not isinstance(datum, dict):
        raise SerdeError(f"{record_type.schema_name} is not a record")
    try:
        return record_type.from_avro(datum)
    except ValueError as exc:
        raise SerdeError(f"{record_type.schema_name}: {exc}") from exc


def _compiled_read(reg: SchemaRegistry, name: str, data: bytes) -> dict[str, Any] | None:
    """The datum read by the compiled closures; None if there are none or they cannot (fastavro's turn)."""
    compiled = reg.compiled.get(name)
    if compiled is None:
        return None
    try:
        return compiled[1](data, HEADER_SIZE)
    except Exception:  # corrupt, or outside the closures: fastavro reads it, or says why not
        return None
