"""`mailstream events export --format parquet` against a real broker: committed LogRecords on mail.events in the
asked span land in a Parquet file that pyarrow reads back with typed columns; a record of an aborted transaction
and one at or after --until are not in it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from mailstream.events.fixtures import log_record
from mailstream.events.kafka import ensure_topics, producer_config
from mailstream.events.records import LogRecord, SmtpResponse
from mailstream.events.serde import encode
from mailstream.events.topics import EVENTS

pytestmark = pytest.mark.integration
N = 25


def _records(run: str, first: int, count: int, at: datetime) -> list[LogRecord]:
    base = log_record()
    return [
        base.model_copy(
            update={
                "id": f"{run}-{i}",
                "tenant": f"export-{run}",
                "timestamp": at + timedelta(seconds=i),
                "created": at,
                "num_attempts": i % 3 + 1,
                "response": SmtpResponse(code=250 if i % 2 else 451, enhanced_code="2.0.0", content=f"ok {i}"),
                "meta": {"run": run, "i": str(i)},
            }
        )
        for i in range(first, first + count)
    ]


def _write(producer: Producer, recs: list[LogRecord], *, commit: bool) -> None:
    """In one transaction, stamped by the producer's clock as the services' records are."""
    producer.begin_transaction()
    for rec in recs:
        producer.produce(EVENTS.name, encode(rec), rec.id.encode())
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)  # on the log, then aborted: a read_committed reader never sees them
        producer.abort_transaction(30)


def test_export_to_parquet_reads_back_typed_and_committed_only(kafka_bootstrap: str, tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, [EVENTS])
    run = uuid.uuid4().hex[:8]
    producer = Producer(producer_config(kafka_bootstrap, **{"transactional.id": f"export-test-{run}"}))
    producer.init_transactions(30)
    event_time = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    start_ms = int(time.time() * 1000)
    inside = _records(run, 0, N, event_time)
    _write(producer, inside, commit=True)
    _write(producer, _records(run, 100, 1, event_time), commit=False)  # before --until: left out as aborted
    until_ms = int(time.time() * 1000)
    while int(time.time() * 1000) <= until_ms:  # the next records are stamped past --until (a ms at most)
        pass
    _write(producer, _records(run, 200, 3, event_time), commit=True)

    since = datetime.fromtimestamp((start_ms - 60_000) / 1000, UTC).isoformat()
    until = datetime.fromtimestamp(until_ms / 1000, UTC).isoformat(timespec="milliseconds")
    target = tmp_path / "events.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "mailstream", "events", "export", "--since", since, "--until", until,
         "--format", "parquet", "-o", str(target), "--tenant", f"export-{run}"],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"exported {N} events" in done.stderr
    assert "mail.events" in done.stderr  # the progress bar's line

    table = pq.read_table(target)
    assert table.num_rows == N
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("created").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("code").type == pa.int32()
    assert schema.field("num_attempts").type == pa.int32()
    assert schema.field("size").type == pa.int64()
    assert schema.field("meta").type == pa.map_(pa.string(), pa.string())
    rows = sorted(table.to_pylist(), key=lambda r: int(r["id"].rsplit("-", 1)[1]))
    assert [r["id"] for r in rows] == [rec.id for rec in inside]  # not the aborted one, nor those past --until
    for row, rec in zip(rows, inside, strict=True):
        assert row["timestamp"] == rec.timestamp  # a timezone-aware datetime, not a string or a number
        assert row["created"] == event_time
        assert row["code"] == rec.response.code
        assert row["response"] == rec.response.content
        assert row["num_attempts"] == rec.num_attempts
        assert dict(row["meta"]) == rec.meta
        assert row["type"] == "Delivery"
        assert row["campaign"] is None
