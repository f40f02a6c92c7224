"""Read mailstream's event log without mailstream: confluent-kafka and fastavro only.

    python examples/consume_events.py --bootstrap 127.0.0.1:19092 --schemas services/events/schemas \
        [--topic mail.events] [--registry http://127.0.0.1:18081/apis/ccompat/v7]

Values are Avro single-object encoded: C3 01, the writer schema's 8-byte CRC-64-AVRO fingerprint, the body. With
kafka.schema_registry set, mailstream writes the Confluent wire format instead: 00, a 4-byte big-endian schema
id, the body; --registry names the registry to look those ids up in. The first byte tells them apart.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form


def load_schemas(directory: Path) -> dict[bytes, Any]:
    """Every schema (current and kept earlier versions) by fingerprint."""
    found: dict[bytes, Any] = {}
    for path in [*sorted(directory.glob("*.avsc")), *sorted(directory.glob("history/*/*.avsc"))]:
        schema = load_schema(str(path), _write_hint=False)  # named types are found beside the file
        found.setdefault(bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")), schema)
    return found


def decode(value: bytes, schemas: dict[bytes, Any], by_id: Callable[[int], Any] | None = None) -> dict[str, Any]:
    if value[:2] == b"\xc3\x01":
        writer, body = schemas[value[2:10]], value[10:]
    elif value[:1] == b"\x00" and len(value) >= 5 and by_id is not None:
        writer, body = by_id(int.from_bytes(value[1:5], "big")), value[5:]
    else:
        raise ValueError("neither Avro single-object encoded nor (with --registry) in the Confluent wire format")
    record: dict[str, Any] = schemaless_reader(io.BytesIO(body), writer, None)  # type: ignore[assignment]
    return record


def registry_lookup(url: str) -> Callable[[int], Any]:
    """Schema by id from a Confluent-compatible registry (confluent-kafka's client caches them)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": url})
    return lambda schema_id: parse_schema(json.loads(client.get_schema(schema_id).schema_str or "null"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--schemas", type=Path, default=Path("services/events/schemas"))
    parser.add_argument("--topic", default="mail.events")
    parser.add_argument("--registry", help="Confluent-compatible schema registry URL (kafka.schema_registry.url)")
    args = parser.parse_args()
    schemas = load_schemas(args.schemas)
    by_id = registry_lookup(args.registry) if args.registry else None
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
                print(json.dumps({"key": (msg.key() or b"").decode(), **decode(value, schemas, by_id)}, default=str))
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
