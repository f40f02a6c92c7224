"""Read mailstream's event log without mailstream: confluent-kafka and fastavro only.

    python examples/consume_events.py --bootstrap 127.0.0.1:19092 --schemas services/events/schemas \
        [--topic mail.events]

Values are Avro single-object encoded: C3 01, the writer schema's 8-byte CRC-64-AVRO fingerprint, the body.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from fastavro import schemaless_reader
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form


def load_schemas(directory: Path) -> dict[bytes, Any]:
    """Every schema (current and kept earlier versions) by fingerprint."""
    found: dict[bytes, Any] = {}
    for path in [*sorted(directory.glob("*.avsc")), *sorted(directory.glob("history/*/*.avsc"))]:
        schema = load_schema(str(path), _write_hint=False)  # named types are found beside the file
        found.setdefault(bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")), schema)
    return found


def decode(value: bytes, schemas: dict[bytes, Any]) -> dict[str, Any]:
    if value[:2] != b"\xc3\x01":
        raise ValueError("not an Avro single-object encoded value")
    record: dict[str, Any] = schemaless_reader(io.BytesIO(value[10:]), schemas[value[2:10]])  # type: ignore[assignment]
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--schemas", type=Path, default=Path("services/events/schemas"))
    parser.add_argument("--topic", default="mail.events")
    args = parser.parse_args()
    schemas = load_schemas(args.schemas)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "example-analyst",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([args.topic])
    try:
        while (msg := consumer.poll(5.0)) is not None:
            value = msg.value()
            if msg.error() is None and value:
                print(json.dumps({"key": (msg.key() or b"").decode(), **decode(value, schemas)}, default=str))
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
