"""The Avro schemas are the contract and `records.py` mirrors them by hand: this test is what keeps the two one.

For every schema record there is a record class with exactly its fields, each of a matching type
(optional exactly when the schema's type is a union with null, enum symbols equal to the Literal's) and
with the same default (or none); and every record class has its schema.
"""

from __future__ import annotations

import enum
import json
import types
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from pydantic.fields import FieldInfo

from mailstream.events import records, serde
from mailstream.events.records import Record

SCHEMAS = serde.schemas_dir()
RECORD_CLASSES = {
    cls.schema_name: cls
    for cls in vars(records).values()
    if isinstance(cls, type) and issubclass(cls, Record) and cls is not Record
}
PRIMITIVES: dict[str, type] = {
    "string": str,
    "int": int,
    "long": int,
    "boolean": bool,
    "bytes": bytes,
    "float": float,
    "double": float,
}
TIMESTAMPS = ("timestamp-millis", "timestamp-micros")


def _named_schemas() -> dict[str, dict[str, Any]]:
    """Every named type of the current schema files by full name, those declared inline included."""
    found: dict[str, dict[str, Any]] = {}

    def visit(schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                visit(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "enum", "fixed"):
                namespace = schema.get("namespace", namespace)
                found[f"{namespace}.{schema['name']}"] = schema
                for f in schema.get("fields", ()):
                    visit(f["type"], namespace)
            elif kind == "array":
                visit(schema["items"], namespace)
            elif kind == "map":
                visit(schema["values"], namespace)

    for path in sorted(SCHEMAS.glob("*.avsc")):
        visit(json.loads(path.read_text()), "mailstream")
    return found


NAMED = _named_schemas()
SCHEMA_RECORDS = sorted(name for name, s in NAMED.items() if s["type"] == "record")


def _symbols(annotation: Any) -> set[str] | None:
    if get_origin(annotation) is Literal:
        return {str(a) for a in get_args(annotation)}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {str(m.value) for m in annotation}
    return None


def mismatch(avro: Any, annotation: Any, namespace: str = "mailstream") -> str | None:
    """Why a Python annotation cannot hold the Avro type's values exactly (None: it can)."""
    if isinstance(avro, list):  # only ["null", X] unions are used: X | None
        others = [b for b in avro if b != "null"]
        args = get_args(annotation)
        optional = get_origin(annotation) in (Union, types.UnionType) and type(None) in args
        if "null" not in avro or len(others) != 1:
            return f"union {avro} is not [null, X]"
        if not optional:
            return f"{annotation} is not optional, the schema's {avro} is"
        rest = [a for a in args if a is not type(None)]
        return mismatch(others[0], rest[0] if len(rest) == 1 else Union[tuple(rest)], namespace)  # noqa: UP007
    if get_origin(annotation) in (Union, types.UnionType):
        return f"{annotation} is a union, the schema's {avro} is not"
    if isinstance(avro, str):
        if avro in PRIMITIVES:
            return None if annotation is PRIMITIVES[avro] else f"{annotation} is not {avro}"
        full = avro if "." in avro else f"{namespace}.{avro}"
        if full not in NAMED:
            return f"unknown named type {avro}"
        return mismatch(NAMED[full], annotation, full.rpartition(".")[0])
    kind = avro["type"]
    if avro.get("logicalType") in TIMESTAMPS:
        return None if annotation is datetime else f"{annotation} is not a datetime ({avro['logicalType']})"
    if kind in PRIMITIVES:
        return mismatch(kind, annotation, namespace)
    if kind == "array":
        args = get_args(annotation)
        if get_origin(annotation) is not tuple or len(args) != 2 or args[1] is not Ellipsis:
            return f"{annotation} is not tuple[X, ...] for an array"
        return mismatch(avro["items"], args[0], namespace)
    if kind == "map":
        args = get_args(annotation)
        if get_origin(annotation) is not dict or args[0] is not str:
            return f"{annotation} is not dict[str, X] for a map"
        return mismatch(avro["values"], args[1], namespace)
    if kind == "enum":
        symbols = _symbols(annotation)
        if symbols != set(avro["symbols"]):
            return f"{annotation} does not hold exactly the symbols {avro['symbols']}"
        return None
    if kind == "record":
        full = f"{avro.get('namespace', namespace)}.{avro['name']}"
        if not (isinstance(annotation, type) and issubclass(annotation, Record) and annotation.schema_name == full):
            return f"{annotation} is not the record class of {full}"
        return None
    return f"unsupported Avro type {avro}"


def _default_mismatch(avro_field: dict[str, Any], info: FieldInfo) -> str | None:
    if "default" not in avro_field:
        return None if info.is_required() else f"has a default ({info.default!r}), the schema's field has none"
    if info.is_required():
        return f"is required, the schema's field defaults to {avro_field['default']!r}"
    ours = info.get_default(call_default_factory=True)
    if isinstance(ours, tuple):
        ours = list(ours)
    if isinstance(ours, enum.Enum):
        ours = ours.value
    if ours != avro_field["default"]:
        return f"defaults to {ours!r}, the schema's field to {avro_field['default']!r}"
    return None


@pytest.mark.parametrize("name", SCHEMA_RECORDS)
def test_record_class_has_exactly_the_schema_fields(name: str) -> None:
    assert name in RECORD_CLASSES, f"no record class in records.py has schema_name {name!r}"
    cls, schema = RECORD_CLASSES[name], NAMED[name]
    fields = {f["name"]: f for f in schema["fields"]}
    assert sorted(cls.model_fields) == sorted(fields), "the class's fields are not the schema's"
    problems = []
    for field_name, avro_field in fields.items():
        info = cls.model_fields[field_name]
        why = mismatch(avro_field["type"], info.annotation, name.rpartition(".")[0])
        if why is None:
            why = _default_mismatch(avro_field, info)
        if why is not None:
            problems.append(f"{field_name}: {why}")
    assert problems == []


def test_every_record_class_has_a_schema_file() -> None:
    for name in RECORD_CLASSES:
        assert (SCHEMAS / f"{name}.avsc").is_file(), f"{name} has no schema file"
    assert set(RECORD_CLASSES) == {n for n in SCHEMA_RECORDS if (SCHEMAS / f"{n}.avsc").is_file()}


@pytest.mark.parametrize(
    ("avro", "annotation"),
    [
        ("string", int),
        (["null", "string"], str),
        ("string", str | None),
        ({"type": "array", "items": "string"}, list[str]),
        ({"type": "map", "values": "long"}, dict[str, str]),
        ("mailstream.MessageStatus", Literal["scheduled", "ready"]),
        ({"type": "long", "logicalType": "timestamp-millis"}, int),
        ("mailstream.BodyRef", records.SmtpResponse),
    ],
)
def test_a_mismatch_is_found(avro: Any, annotation: Any) -> None:
    """The checker itself can fail: each of these pairs is a mismatch a hand edit could make."""
    assert mismatch(avro, annotation) is not None


def test_a_default_mismatch_is_found() -> None:
    info = records.TransactionStatus.model_fields["num_attempts"]
    assert _default_mismatch({"name": "num_attempts", "type": "int", "default": 1}, info) is not None
    assert _default_mismatch({"name": "num_attempts", "type": "int"}, info) is not None
    assert (
        _default_mismatch({"name": "id", "type": "string", "default": ""}, records.TransactionStatus.model_fields["id"])
        is not None
    )


def test_schema_dir_is_the_one_serde_reads() -> None:
    assert Path(SCHEMAS).resolve() == (Path(records.__file__).parent / "schemas").resolve()
