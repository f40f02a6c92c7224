"""Durable reads (issue #9): an ingest process folding mail.status into its SQLite view is SIGKILLed mid-stream,
again and again. After each kill the file holds, partition by partition, exactly the fold of the records before
the offset it stored (the rows and the offset committed together: nothing skipped, nothing half-applied), and
`PRAGMA integrity_check` passes; restarted, it resumes from there and ends equal to the topic's latest version
of every transaction."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Producer

from mailstream.events import fixtures
from mailstream.events.kafka import ensure_topics, producer_config
from mailstream.events.records import TransactionStatus
from mailstream.events.serde import decode, encode
from mailstream.events.topics import ALL_TOPICS, STATUS
from tests.infra.stack import free_port
from tests.infra.topics import end_offsets, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEY = "sigkill-admin-key-0123456789"
IDS_PER_WAVE = 5000
VERSIONS = 5


def _wave(bootstrap: str, tag: str) -> None:
    """IDS_PER_WAVE new transactions, each written VERSIONS times, versions interleaved across them."""
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 20}))
    base = fixtures.status()
    for version in range(1, VERSIONS + 1):
        for i in range(IDS_PER_WAVE):
            tx_id = f"sv-{tag}-{i}"
            status = base.model_copy(update={"id": tx_id, "version": version, "num_attempts": version})
            while True:
                try:
                    producer.produce(STATUS.name, key=tx_id.encode(), value=encode(status))
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0


def _start(config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    with (workdir / "ingest.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "mailstream.ingest", "--config", str(config)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _applied(db: Path) -> dict[int, int]:
    """The offsets the view has committed, read beside the running writer (WAL lets a reader in)."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute("SELECT partition, next_offset FROM offsets").fetchall())
    except sqlite3.OperationalError:  # the schema not created yet
        return {}
    finally:
        conn.close()


def _rows(db: Path) -> dict[str, tuple[int, bytes]]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {tx: (v, bytes(r)) for tx, v, r in conn.execute("SELECT id, version, record FROM status")}
    finally:
        conn.close()


def _fold(records: list[tuple[int, int, bytes, bytes | None]], upto: dict[int, int]) -> dict[str, tuple[int, bytes]]:
    """What the view must hold having applied each partition's records before `upto` (newest version wins)."""
    rows: dict[str, tuple[int, bytes]] = {}
    for partition, offset, _, value in records:
        if value is None or offset >= upto.get(partition, 0):
            continue
        status = decode(value, TransactionStatus)
        if status.id not in rows or status.version > rows[status.id][0]:
            rows[status.id] = (status.version, value)
    return rows


def test_sigkill_mid_write_loses_and_repeats_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    ensure_topics(kafka_bootstrap, ALL_TOPICS)
    db = tmp_path / "status.sqlite3"
    port = free_port()
    config: dict[str, Any] = {
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "ingest": {
            "port": port,
            "status_db": str(db),
            "read_model_db": str(tmp_path / "messages.sqlite3"),
            "message_id_domain": "sigkill.test",
            "transactional_id": f"sigkill-{uuid.uuid4().hex[:8]}",
            "api_keys": [{"key": ADMIN_KEY, "admin": True}],
        },
    }
    config_file = tmp_path / "ingest.yaml"
    config_file.write_text(yaml.safe_dump(config))
    tag = uuid.uuid4().hex[:8]
    mid_stream = 0
    for wave in range(3):
        before = sum(end_offsets(kafka_bootstrap, STATUS.name, STATUS.partitions))
        _wave(kafka_bootstrap, f"{tag}-{wave}")
        ends = end_offsets(kafka_bootstrap, STATUS.name, STATUS.partitions)
        proc = _start(config_file, tmp_path)
        deadline = time.monotonic() + 120
        while sum(_applied(db).values()) < before + (sum(ends) - before) // 4:  # a quarter of the wave in
            assert proc.poll() is None, (tmp_path / "ingest.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the view did not start folding the wave in"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        applied = _applied(db)
        mid_stream += sum(applied.values()) < sum(ends)
        records = read_all(kafka_bootstrap, STATUS.name, STATUS.partitions)
        assert _rows(db) == _fold(records, applied), f"wave {wave}: the file is not the fold up to its offsets"
    assert mid_stream >= 1, "no kill landed while the view was still folding a wave in"

    proc = _start(config_file, tmp_path)
    try:
        ends = end_offsets(kafka_bootstrap, STATUS.name, STATUS.partitions)
        deadline = time.monotonic() + 120
        while _applied(db) != {p: e for p, e in enumerate(ends) if e}:
            assert proc.poll() is None, (tmp_path / "ingest.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"not caught up: {_applied(db)} of {ends}"
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
            for wave in range(3):
                answer = c.get(f"/api/transactions/sv-{tag}-{wave}-{IDS_PER_WAVE - 1}", timeout=10)
                assert answer.status_code == 200, answer.text
                assert answer.json()["version"] == VERSIONS
    finally:
        proc.terminate()
        proc.wait(30)
    records = read_all(kafka_bootstrap, STATUS.name, STATUS.partitions)
    latest = _fold(records, {p: e for p, e in enumerate(ends)})
    assert _rows(db) == latest
    assert sum(1 for tx in latest if tx.startswith(f"sv-{tag}-")) == 3 * IDS_PER_WAVE
