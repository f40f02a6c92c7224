"""Avro schema resolution as the specification defines it, decided on the schemas rather than on sample data.

`resolution_errors(writer, reader)` lists why data written with `writer` cannot be read with `reader`
(empty: it can). Sample records find such a break only when a sample happens to hit it (a new enum
symbol in one record of five), so the compatibility tests ask this instead. Schemas are given as
`fastavro.schema.load_schema` returns them: a named type defined in full where it first appears and
referred to by full name afterwards.
"""

from __future__ import annotations

from typing import Any

PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
NAMED = {"record", "enum", "fixed", "error"}


def named_types(schema: Any, found: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Every named type defined in `schema`, by full name."""
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, found)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in NAMED:
            found.setdefault(schema["name"], schema)
            for field in schema.get("fields", ()):
                named_types(field["type"], found)
        elif kind == "array":
            named_types(schema["items"], found)
        elif kind == "map":
            named_types(schema["values"], found)
    return found


def resolution_errors(writer: Any, reader: Any) -> list[str]:
    return _Resolver(named_types(writer), named_types(reader)).errors(writer, reader, "")


class _Resolver:
    def __init__(self, writer_names: dict[str, dict[str, Any]], reader_names: dict[str, dict[str, Any]]) -> None:
        self.writer_names, self.reader_names = writer_names, reader_names
        self.seen: set[tuple[str, str]] = set()  # named pairs under comparison (recursive types)

    def _deref(self, schema: Any, names: dict[str, dict[str, Any]]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return names[schema]
        if isinstance(schema, dict) and schema["type"] in PRIMITIVES:
            return schema["type"]  # a logical type is read as its underlying type
        return schema

    def errors(self, writer: Any, reader: Any, where: str) -> list[str]:
        w, r = self._deref(writer, self.writer_names), self._deref(reader, self.reader_names)
        if isinstance(w, list):  # every branch the writer may have chosen must resolve
            return [e for branch in w for e in self.errors(branch, r, where)]
        if isinstance(r, list):
            if any(not self.errors(w, branch, where) for branch in r):
                return []
            return [f"{where or 'value'}: no branch of {_name(r)} reads {_name(w)}"]
        if isinstance(w, str) or isinstance(r, str):
            if w == r or (isinstance(w, str) and isinstance(r, str) and (w, r) in PROMOTIONS):
                return []
            return [f"{where or 'value'}: {_name(w)} cannot be read as {_name(r)}"]
        if w["type"] != r["type"]:
            return [f"{where or 'value'}: {_name(w)} cannot be read as {_name(r)}"]
        kind = w["type"]
        if kind == "array":
            return self.errors(w["items"], r["items"], f"{where}[]")
        if kind == "map":
            return self.errors(w["values"], r["values"], f"{where}{{}}")
        if _short(w["name"]) != _short(r["name"]) and _short(w["name"]) not in r.get("aliases", ()):
            return [f"{where or 'value'}: {w['name']} cannot be read as {r['name']}"]
        if kind == "enum":
            extra = [s for s in w["symbols"] if s not in r["symbols"]]
            if extra and "default" not in r:
                return [f"{where or w['name']}: symbols {extra} unknown to the reader, which has no enum default"]
            return []
        if kind == "fixed":
            return [] if w["size"] == r["size"] else [f"{where or w['name']}: fixed size {w['size']} != {r['size']}"]
        pair = (w["name"], r["name"])
        if pair in self.seen:
            return []
        self.seen.add(pair)
        written = {f["name"]: f for f in w["fields"]}
        for f in w["fields"]:
            for alias in f.get("aliases", ()):
                written.setdefault(alias, f)
        problems = []
        for field in r["fields"]:
            source = next((written[n] for n in (field["name"], *field.get("aliases", ())) if n in written), None)
            path = f"{where}.{field['name']}" if where else f"{_short(r['name'])}.{field['name']}"
            if source is None:
                if "default" not in field:
                    problems.append(f"{path}: not written and has no default")
            else:
                problems += self.errors(source["type"], field["type"], path)
        return problems


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "[" + ", ".join(_name(b) for b in schema) + "]"
    return str(schema.get("name", schema["type"]))
