"""Schema evolution stays backward compatible, checked against the versions records were really written with.

Earlier versions come from two places: the sets serde keeps for decoding (`schemas/history/<date>/`,
in the package, so this part needs no git) and every committed set of schema files (git history;
each version resolved against the named types of its own commit, and the working tree's set is
checked against the last commit's, so an incompatible edit fails before it is committed). Every
schema, including one with no earlier version yet, is also checked against generated evolutions: the
same schema without one of its fields that has a default (an earlier version, before that field).

Resolution is decided on the schemas (`tests.infra.avro_resolution`), not on sample records, which
would hit a new enum symbol only by chance. Forward compatibility (an earlier reader of a record the
current version writes) is checked too, with its known breaks listed: serde finds a record's schema
by fingerprint, so an older process refuses a newer version's records whatever Avro would allow;
the list says which changes would break an older reader that did know the new schema.
"""

from __future__ import annotations

import copy
import io
import shutil
import subprocess
import tarfile
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from fastavro.utils import generate_many

from mailstream.events import records, serde
from mailstream.events.records import Record
from tests.infra.avro_resolution import resolution_errors

SCHEMAS = serde.schemas_dir()
REPO = Path(__file__).resolve().parents[3]
CURRENT = sorted(p.stem for p in SCHEMAS.glob("*.avsc"))
RECORD_CLASSES = {
    c.schema_name: c
    for c in vars(records).values()
    if isinstance(c, type) and issubclass(c, Record) and c is not Record
}
HAS_GIT = shutil.which("git") is not None and (REPO / ".git").exists()
SCRATCH = tempfile.TemporaryDirectory(prefix="schema-evolution-")  # each commit's schema files, for this run

# Schemas an earlier reader could not read as the current version writes them (each: since when, and why).
NOT_FORWARD = {
    "mailstream.AttemptOutcome": "2026-11-22: EXPIRED and CANCELLED added (no enum default)",
    "mailstream.AttemptRecord": "embeds AttemptOutcome",
    "mailstream.QueueAction": "2026-11-22: drain, disable and cancel added (no enum default)",
    "mailstream.QueueCommand": "embeds QueueAction",
}

Versions = dict[str, Any]  # schema name -> schema, one set of files loaded together


def _load_set(directory: Path) -> Versions:
    return {p.stem: load_schema(str(p), _write_hint=False) for p in sorted(directory.glob("*.avsc"))}


def _fingerprint(schema: Any) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout


@cache
def history_sets() -> tuple[tuple[str, Versions], ...]:
    """(date, set) of every set serde keeps for records written before a change."""
    return tuple((d.name, _load_set(d)) for d in sorted((SCHEMAS / "history").iterdir()) if d.is_dir())


@cache
def committed_sets() -> tuple[tuple[str, Versions], ...]:
    """(commit, set) of every commit that changed a schema, newest first, each set as that commit had it
    (the schemas lived in a top-level schemas/ before services/events/schemas/)."""
    if not HAS_GIT:
        return ()
    found = []
    for sha in _git("log", "--format=%H", "--", "services/events/schemas", "schemas").split():
        folder = Path(SCRATCH.name) / sha
        folder.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", sha, "--", *_schema_dirs(sha)], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".avsc") and "/history/" not in member.name:
                    source = tar.extractfile(member)
                    assert source is not None
                    (folder / Path(member.name).name).write_bytes(source.read())
        found.append((sha[:12], _load_set(folder)))
    return tuple(found)


def _schema_dirs(sha: str) -> list[str]:
    tree = set(_git("ls-tree", "-d", "--name-only", sha, "--", "schemas", "services/events/schemas").split())
    return [d for d in ("schemas", "services/events/schemas") if d in tree]


@cache
def current_set() -> Versions:
    return _load_set(SCHEMAS)


def earlier_versions(name: str) -> list[tuple[str, Any]]:
    """Every distinct earlier version of a schema (by canonical form), newest first, from git and history."""
    seen = {to_parsing_canonical_form(current_set()[name])}
    out = []
    for tag, versions in (*committed_sets(), *history_sets()):
        schema = versions.get(name)
        if schema is not None and (form := to_parsing_canonical_form(schema)) not in seen:
            seen.add(form)
            out.append((tag, schema))
    return out


# -- the checker itself ----------------------------------------------------------------------------
RECORD: dict[str, Any] = {
    "type": "record",
    "name": "x.R",
    "fields": [
        {"name": "a", "type": "int"},
        {"name": "b", "type": ["null", "string"], "default": None},
        {"name": "e", "type": {"type": "enum", "name": "x.E", "symbols": ["A", "B"]}},
    ],
}


def _variant(**changes: Any) -> dict[str, Any]:
    schema = copy.deepcopy(RECORD)
    fields = {f["name"]: f for f in schema["fields"]}
    for name, field in changes.items():
        if field is None:
            schema["fields"].remove(fields[name])
        elif name in fields:
            fields[name].clear()
            fields[name].update({"name": name, **field})
        else:
            schema["fields"].append({"name": name, **field})
    return schema


@pytest.mark.parametrize(
    ("writer", "reader", "breaks"),
    [
        (_variant(b=None), RECORD, False),  # a field added with a default
        (_variant(c={"type": "string"}), RECORD, False),  # a field removed
        (_variant(a={"type": "int"}), _variant(a={"type": "long"}), False),  # promoted
        (_variant(b=None), _variant(b={"type": ["null", "string"]}), True),  # added without a default
        (_variant(a={"type": "long"}), RECORD, True),  # narrowed
        (_variant(a={"type": "int"}), _variant(a={"type": "string"}), True),
        (_variant(e={"type": {"type": "enum", "name": "x.E", "symbols": ["A", "B", "C"]}}), RECORD, True),
        (RECORD, _variant(e={"type": {"type": "enum", "name": "x.E", "symbols": ["A"], "default": "A"}}), False),
        (_variant(b={"type": ["null", "string", "int"], "default": None}), RECORD, True),
        (_variant(a={"type": ["null", "int"], "default": None}), RECORD, True),
        (RECORD, _variant(a={"type": ["null", "int"], "default": None}), False),
    ],
)
def test_the_resolution_checker_finds_breaks(writer: Any, reader: Any, breaks: bool) -> None:
    assert bool(resolution_errors(parse_schema(writer), parse_schema(reader))) is breaks


# -- the project's schemas -------------------------------------------------------------------------
@pytest.mark.parametrize("name", CURRENT)
def test_reads_every_earlier_version(name: str) -> None:
    """Data written with any earlier committed or kept version of the schema is readable with the current one."""
    problems = {
        tag: errors
        for tag, schema in earlier_versions(name)
        if (errors := resolution_errors(schema, current_set()[name]))
    }
    assert problems == {}


@pytest.mark.parametrize(
    ("tag", "name"), [(tag, n) for tag, versions in history_sets() for n in versions if n in RECORD_CLASSES]
)  # the enums are read inside their records
def test_records_written_with_a_kept_set_decode_into_todays_types(tag: str, name: str) -> None:
    """Through serde as a reader meets them: found by fingerprint, resolved, validated into the record class."""
    writer = dict(history_sets())[tag][name]
    fp = _fingerprint(writer)
    assert fp in serde.registry().by_fingerprint
    record_type = RECORD_CLASSES[name]
    for datum in generate_many(writer, 10):
        buf = io.BytesIO()
        buf.write(serde.MAGIC + fp)
        schemaless_writer(buf, writer, datum)
        assert isinstance(serde.decode(buf.getvalue(), record_type), record_type)


@pytest.mark.skipif(not HAS_GIT, reason="needs the checkout's git history")
def test_every_version_committed_since_sets_are_kept_is_decodable() -> None:
    """A change that alters a fingerprint keeps the previous set in schemas/history/ (README): records written
    with any committed version, since the first set was kept, are found by their fingerprint."""
    first_kept = _git(
        "log", "--diff-filter=A", "--format=%H", "--", "services/events/schemas/history", "schemas/history"
    ).split()[-1]
    since = set(_git("rev-list", f"{first_kept}^..HEAD").split())
    sets = list(committed_sets())
    released = [(tag, v) for tag, v in sets if any(sha.startswith(tag) for sha in since)]
    released += [sets[len(released)]] if len(sets) > len(released) else []  # the set the first kept one saved
    known = serde.registry().by_fingerprint
    unknown = {
        (tag, name)
        for tag, versions in released
        for name, schema in versions.items()
        if _fingerprint(schema) not in known
    }
    unknown |= {("working tree", n) for n, s in current_set().items() if _fingerprint(s) not in known}
    assert unknown == set()


@pytest.mark.parametrize("name", [n for n in CURRENT if n in RECORD_CLASSES])
def test_reads_each_generated_earlier_version(name: str) -> None:
    """For every field with a default: the schema as it was before that field was added can still be read."""
    current = current_set()[name]
    optional = [f["name"] for f in current["fields"] if "default" in f]
    for field in optional:
        earlier = copy.deepcopy(current)
        earlier["fields"] = [f for f in earlier["fields"] if f["name"] != field]
        assert resolution_errors(earlier, current) == [], field
    for f in current["fields"]:
        if "default" not in f:  # and the check can fail: a required field cannot have been added later
            earlier = {**current, "fields": [g for g in current["fields"] if g is not f]}
            assert resolution_errors(earlier, current) != [], f["name"]


@pytest.mark.parametrize("name", [n for n in CURRENT if earlier_versions(n)])
def test_the_previous_reader_reads_what_the_current_version_writes(name: str) -> None:
    tag, previous = earlier_versions(name)[0]
    errors = resolution_errors(current_set()[name], previous)
    if name in NOT_FORWARD:
        assert errors, f"{name} reads forward again: drop it from NOT_FORWARD"
    else:
        assert errors == [], f"an older reader ({tag}) cannot read {name}; list it in NOT_FORWARD if intended"
