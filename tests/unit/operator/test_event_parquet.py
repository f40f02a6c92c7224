"""The Parquet columns of `events export` (pure: pyarrow in memory) and the command's refusals before it reads
anything (the export itself against a real broker: tests/integration/test_events_export_parquet.py)."""

from __future__ import annotations

import io
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mailstream.events.fixtures import log_record
from mailstream.events.records import SmtpResponse
from mailstream.operator.client import EXIT_BAD_REQUEST
from mailstream.operator.commands import run
from mailstream.operator.event_parquet import INSTALL_HINT, ParquetSink, pyarrow_modules


def test_a_record_becomes_one_typed_row_with_the_reply_flattened() -> None:
    rec = log_record().model_copy(
        update={
            "response": SmtpResponse(code=550, enhanced_code="5.1.1", content="no such user", command="RCPT"),
            "meta": {"k": "v"},
            "campaign": "spring",
        }
    )
    buf = io.BytesIO()
    sink = ParquetSink(buf)
    sink.add(rec)
    sink.close()
    [row] = pq.read_table(io.BytesIO(buf.getvalue())).to_pylist()
    assert row["timestamp"] == rec.timestamp
    assert row["timestamp"].tzinfo is not None
    assert (row["code"], row["enhanced_code"], row["response"], row["command"]) == (
        550,
        "5.1.1",
        "no such user",
        "RCPT",
    )
    assert row["meta"] == [("k", "v")]
    assert (row["tenant"], row["campaign"], row["size"]) == ("acme", "spring", 2048)
    assert row["peer_address"] is None


def test_rows_are_written_a_row_group_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mailstream.operator.event_parquet.ROW_GROUP", 2)
    buf = io.BytesIO()
    sink = ParquetSink(buf)
    for i in range(5):
        sink.add(log_record().model_copy(update={"id": f"tx-{i}"}))
    sink.close()
    meta = pq.ParquetFile(io.BytesIO(buf.getvalue())).metadata
    assert (meta.num_rows, meta.num_row_groups) == (5, 3)


def test_an_empty_export_is_a_valid_file_with_the_columns() -> None:
    buf = io.BytesIO()
    ParquetSink(buf).close()
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    assert table.num_rows == 0
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")


def test_without_pyarrow_the_hint_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    with pytest.raises(ImportError, match=r"mailstream\[parquet\]"):
        pyarrow_modules()
    assert "pip install" in INSTALL_HINT


def test_the_export_says_how_to_install_pyarrow_before_reading(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached: refused first
    assert run(["events", "export", "--since", "1h", "--format", "parquet", "-o", "/nonexistent/x"]) == EXIT_BAD_REQUEST
    assert "pip install 'mailstream[parquet]'" in capsys.readouterr().err


def test_until_before_since_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert run(["events", "export", "--since", "1h", "--until", "2h", "--format", "parquet"]) == EXIT_BAD_REQUEST
    assert "--until must be after --since" in capsys.readouterr().err
