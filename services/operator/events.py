"""`events tail` (follow mail.events, filtered) and `events export` (a span of it to JSONL, CSV or Parquet)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Literal, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mailstream.events.records import LogRecord
from mailstream.operator.app import Domain, app
from mailstream.operator.client import EXIT_BAD_REQUEST, EXIT_UNAVAILABLE, ApiError
from mailstream.operator.event_log import (
    CSV_FIELDS,
    EventFilter,
    EventLog,
    as_json,
    cluster,
    csv_line,
    csv_values,
    summary,
)
from mailstream.operator.event_parquet import ParquetSink, pyarrow_modules
from mailstream.operator.options import parse_offsets, parse_time, split_list

events = typer.Typer(help="The event log (mail.events), read straight from Kafka.", no_args_is_help=True)
app.add_typer(events, name="events")

ConfigFile = Annotated[
    str | None,
    typer.Option("--config", help="The services' YAML for the Kafka settings (else KAFKA_BOOTSTRAP_SERVERS)."),
]
Types = Annotated[list[str] | None, typer.Option("--type", help="Delivery,Bounce,TransientFailure,... (repeatable).")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant's events.")]
Since = Annotated[str | None, typer.Option(help="Start at this time: RFC 3339 or a span ago (1h).")]
Until = Annotated[str | None, typer.Option(help="Stop before this time: RFC 3339 or a span ago (default: now).")]


def _open(config_file: str | None) -> EventLog:
    try:
        return EventLog(cluster(config_file))
    except ValueError as exc:
        raise ApiError(str(exc), EXIT_BAD_REQUEST) from None
    except ConnectionError as exc:
        raise ApiError(str(exc), EXIT_UNAVAILABLE) from None


def _time(text: str | None) -> datetime | None:
    try:
        return None if text is None else parse_time(text, datetime.now(UTC))
    except ValueError as exc:
        raise ApiError(str(exc), EXIT_BAD_REQUEST) from None


@events.command()
def tail(
    tenant: TenantOpt = None,
    types: Types = None,
    domain: Domain = None,
    since: Since = None,
    max_events: Annotated[int | None, typer.Option("--max", help="Stop after this many events.")] = None,
    config_file: ConfigFile = None,
    as_json_lines: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Follow new events (from --since, else from now) until Ctrl-C or --max."""
    wanted = EventFilter(tenant, frozenset(split_list(types)), domain)
    log = _open(config_file)
    shown = 0
    try:
        starts = log.starts(_time(since), from_beginning=False)
        print("following mail.events (Ctrl-C stops)", file=sys.stderr, flush=True)
        for rec in log.read(starts, until_end=False):
            if rec is None or not wanted.matches(rec):
                continue
            print(as_json(rec) if as_json_lines else summary(rec), flush=True)
            shown += 1
            if max_events is not None and shown >= max_events:
                break
    except KeyboardInterrupt:
        pass  # the way to stop following: close the consumer, exit 0
    finally:
        log.close()


@events.command("export")
def export(
    since: Since = None,
    until: Until = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="From the oldest record kept.")] = False,
    offset: Annotated[
        list[str] | None, typer.Option(help="From offset N of every partition, or P:N of partition P (repeatable).")
    ] = None,
    fmt: Annotated[
        Literal["jsonl", "csv", "parquet"],
        typer.Option("--format", help="parquet needs the extra: pip install 'mailstream[parquet]'."),
    ] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="A file (default: stdout).")] = None,
    tenant: TenantOpt = None,
    types: Types = None,
    domain: Domain = None,
    config_file: ConfigFile = None,
) -> None:
    """Every committed event from --since, --offset or --from-beginning up to --until (else now), as JSONL, CSV
    or Parquet; progress on stderr."""
    if since is None and not from_beginning and not offset:
        raise ApiError("give --since TIME, --offset N or --from-beginning", EXIT_BAD_REQUEST)
    start, stop = _time(since), _time(until)
    if start is not None and stop is not None and stop <= start:
        raise ApiError("--until must be after --since", EXIT_BAD_REQUEST)
    if fmt == "parquet":
        try:
            pyarrow_modules()  # before reading anything: a missing extra is said at once
        except ImportError as exc:
            raise ApiError(str(exc), EXIT_BAD_REQUEST) from None
    wanted = EventFilter(tenant, frozenset(split_list(types)), domain)
    log = _open(config_file)
    with ExitStack() as stack:
        stack.callback(log.close)
        try:
            offsets = parse_offsets(offset or [], log.partitions)
        except ValueError as exc:
            raise ApiError(str(exc), EXIT_BAD_REQUEST) from None
        starts = log.starts(start, from_beginning, offsets)
        if stop is not None:
            log.stop_at(stop)
        write = _writer(stack, fmt, output)
        total = log.remaining(starts)
        bar = stack.enter_context(_progress())
        task = bar.add_task("mail.events", total=total)
        written = 0
        for rec in log.read(starts, until_end=True):
            if rec is not None:
                bar.advance(task)
                if wanted.matches(rec):
                    write(rec)
                    written += 1
        bar.update(task, completed=total)
    print(f"exported {written} events", file=sys.stderr)
    if log.skipped:
        print(f"skipped {log.skipped} records it could not read ({log.skip_reason})", file=sys.stderr)


def _writer(stack: ExitStack, fmt: str, output: Path | None) -> Callable[[LogRecord], None]:
    """Where each record goes; the stack closes the file (and a Parquet file's footer) at the end."""
    if fmt == "parquet":
        binary: IO[bytes] = stack.enter_context(output.open("wb")) if output else sys.stdout.buffer
        sink = ParquetSink(binary)
        stack.callback(sink.close)  # runs before the file closes (the stack unwinds in reverse)
        return sink.add
    out: TextIO = stack.enter_context(output.open("w", newline="")) if output else sys.stdout
    line: Callable[[LogRecord], str] = (lambda rec: csv_line(csv_values(rec))) if fmt == "csv" else _json_line
    if fmt == "csv":
        out.write(csv_line(list(CSV_FIELDS)))

    def write(rec: LogRecord) -> None:
        out.write(line(rec))

    return write


def _json_line(rec: LogRecord) -> str:
    return as_json(rec) + "\n"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
