"""Parquet output of `events export`: typed columns (event times as UTC timestamps, codes and counts as
integers, meta as a map), written a row group at a time so a long span never sits in memory.

pyarrow is the optional extra `parquet` (a large wheel the services never need); without it the export says
how to install it before reading anything."""

from __future__ import annotations

from types import ModuleType
from typing import IO, Any

from mailstream.events.records import LogRecord

INSTALL_HINT = "--format parquet needs pyarrow: pip install 'mailstream[parquet]'"
ROW_GROUP = 10_000

# (column, pyarrow type name); the order is the file's. The reply is flattened as in the CSV export.
COLUMNS = (
    ("timestamp", "ts"), ("created", "ts"), ("type", "str"), ("id", "str"), ("tenant", "str"),
    ("campaign", "str"), ("queue", "str"), ("sender", "str"), ("recipient", "str"), ("code", "i32"),
    ("enhanced_code", "str"), ("response", "str"), ("command", "str"), ("site", "str"), ("size", "i64"),
    ("peer_address", "str"), ("num_attempts", "i32"), ("bounce_classification", "str"), ("bounce_type", "str"),
    ("egress_pool", "str"), ("egress_source", "str"), ("reception_protocol", "str"), ("delivery_protocol", "str"),
    ("message_id", "str"), ("meta", "map"),
)  # fmt: skip


def pyarrow_modules() -> tuple[ModuleType, ModuleType]:
    """(pyarrow, pyarrow.parquet); ImportError with the install hint when the extra is missing."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return pyarrow, pyarrow.parquet


def arrow_schema(pa: ModuleType) -> Any:
    kinds = {
        "ts": pa.timestamp("ms", tz="UTC"),
        "str": pa.string(),
        "i32": pa.int32(),
        "i64": pa.int64(),
        "map": pa.map_(pa.string(), pa.string()),
    }
    return pa.schema([pa.field(name, kinds[kind], nullable=name != "meta") for name, kind in COLUMNS])


def row(rec: LogRecord) -> dict[str, Any]:
    r = rec.response
    values = {name: getattr(rec, name, None) for name, _ in COLUMNS}
    values.update(code=r.code, enhanced_code=r.enhanced_code, response=r.content, command=r.command)
    values["meta"] = list(rec.meta.items())
    return values


class ParquetSink:
    """Rows buffered up to ROW_GROUP, then written as one row group; `close` writes the rest and the footer."""

    def __init__(self, out: IO[bytes]) -> None:
        self._pa, pq = pyarrow_modules()
        self._schema = arrow_schema(self._pa)
        self._writer = pq.ParquetWriter(out, self._schema, compression="zstd")
        self._rows: list[dict[str, Any]] = []

    def add(self, rec: LogRecord) -> None:
        self._rows.append(row(rec))
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(self._pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
