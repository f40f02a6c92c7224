"""Every schema parses, every record type round-trips, and old writers stay readable."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import load_schema
from fastavro.utils import generate_many

from mailstream.events import fixtures, serde
from mailstream.events.records import DeliveryTask, Record, TransactionStatus

SCHEMAS = serde.schemas_dir()
REPO = Path(__file__).resolve().parents[2]  # the checkout: its git history holds earlier schemas


@pytest.mark.parametrize("record", fixtures.ALL, ids=lambda r: r.schema_name)
def test_round_trip(record: Record) -> None:
    data = serde.encode(record)
    assert data[:2] == b"\xc3\x01"
    assert serde.decode(data, type(record)) == record


@pytest.mark.parametrize("bad", [None, b"", b"\x00\x01" + b"x" * 20, b"\xc3\x01" + b"\xff" * 8 + b"x"])
def test_garbage_is_refused(bad: bytes | None) -> None:
    with pytest.raises(serde.SerdeError):
        serde.decode(bad, DeliveryTask)


def test_wrong_record_type_is_refused() -> None:
    with pytest.raises(serde.SerdeError):
        serde.decode(serde.encode(fixtures.task()), TransactionStatus)


def _committed_versions(path: Path) -> list[str]:
    """Every distinct committed content of a schema file, newest first (across moves of the file)."""
    rel = path.resolve().relative_to(REPO).as_posix()
    # --name-only gives the file's path in each commit (the schemas lived in a top-level schemas/ once).
    log = subprocess.run(["git", "-C", str(REPO), "log", "--follow", "--format=commit %H", "--name-only", "--", rel],
                         capture_output=True, text=True, check=False)
    found: list[tuple[str, str]] = []  # (commit, path then); none before the first commit
    sha = ""
    for line in log.stdout.splitlines() if log.returncode == 0 else []:
        if line.startswith("commit "):
            sha = line.removeprefix("commit ")
        elif line.strip():
            found.append((sha, line.strip()))
    seen: list[str] = []
    for sha, old_path in found:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{sha}:{old_path}"],
                              capture_output=True, text=True, check=True).stdout
        if text not in seen:
            seen.append(text)
    return seen


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git history")
@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.avsc")), ids=lambda p: p.stem)
def test_backward_compatible_with_committed_versions(path: Path, tmp_path: Path) -> None:
    """Records written with any committed version of a schema are readable with the current one."""
    reader = load_schema(str(path), _write_hint=False)
    versions = _committed_versions(path)
    for i, text in enumerate(versions):
        # Resolve the old file's named references against the other current schema files.
        old_dir = tmp_path / f"v{i}"
        shutil.copytree(SCHEMAS, old_dir, ignore=shutil.ignore_patterns("history"))
        (old_dir / path.name).write_text(text)
        writer = load_schema(str(old_dir / path.name), _write_hint=False)
        for datum in generate_many(writer, 20):
            buf = io.BytesIO()
            schemaless_writer(buf, writer, datum)
            buf.seek(0)
            schemaless_reader(buf, writer, reader)  # raises SchemaResolutionError when incompatible
