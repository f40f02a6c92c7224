"""mail.events as the CLI reads it: every partition, outside any consumer group, committed records only;
the filters and the JSONL and CSV export formats (pure; Parquet: event_parquet)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from mailstream.config import ConfigError, load_config
from mailstream.events.kafka import Cluster, client_config, consume_now
from mailstream.events.records import LogRecord
from mailstream.events.serde import SerdeError, decode, use_wire_format
from mailstream.events.topics import EVENTS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CSV_FIELDS = (
    "timestamp", "type", "id", "tenant", "campaign", "queue", "sender", "recipient", "code", "enhanced_code",
    "response", "site", "egress_source", "num_attempts", "bounce_classification", "message_id",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EventFilter:
    tenant: str | None = None
    types: frozenset[str] = frozenset()
    domain: str | None = None

    def matches(self, rec: LogRecord) -> bool:
        if self.tenant is not None and rec.tenant != self.tenant:
            return False
        if self.types and rec.type not in self.types:
            return False
        return self.domain is None or rec.recipient.rpartition("@")[2].lower() == self.domain.lower()


def as_json(rec: LogRecord) -> str:
    return json.dumps(rec.model_dump(mode="json"), separators=(",", ":"))


def csv_values(rec: LogRecord) -> list[str]:
    r = rec.response
    values = {**rec.model_dump(mode="json"), "code": r.code, "enhanced_code": r.enhanced_code, "response": r.content}
    return ["" if values.get(f) is None else str(values[f]) for f in CSV_FIELDS]


def csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def summary(rec: LogRecord) -> str:
    """One line for people: when, what, which transaction, to whom, and the reply."""
    r = rec.response
    reply = f"{r.code} {r.enhanced_code + ' ' if r.enhanced_code else ''}{r.content}".strip()
    return f"{rec.timestamp:%Y-%m-%d %H:%M:%S} {rec.type:<16} {rec.id} {rec.recipient} [{rec.queue}] {reply}"


def cluster(config_file: str | None) -> Cluster:
    """The services' Kafka settings (TLS, SASL) from their YAML, else the defaults; KAFKA_BOOTSTRAP_SERVERS
    overrides the servers either way. With their `kafka.schema_registry`, records in the Confluent wire format
    are read through it (single-object ones need nothing)."""
    try:
        settings = load_config(config_file).kafka
        where = Cluster.of(settings)
    except (ConfigError, OSError) as exc:
        raise ValueError(str(exc)) from None
    if settings.schema_registry is not None:
        from mailstream.events.wire import RegistryIds

        use_wire_format(RegistryIds.connect(settings.schema_registry))
    return where


def _millis(at: datetime) -> int:
    """Milliseconds since the epoch, exactly (a float's `timestamp() * 1000` can land 1 ms short)."""
    return (at - EPOCH) // timedelta(milliseconds=1)


class EventLog:
    """Reads mail.events from chosen offsets; `ends` is where each partition stood when it was opened."""

    def __init__(self, where: Cluster, timeout: float = 15.0) -> None:
        self.skipped, self.skip_reason = 0, ""  # records that could not be read, and why the first was not
        self._consumer = Consumer(
            client_config(where, **{"group.id": "mailstream-cli", "enable.auto.commit": False,
                                    "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
        )  # fmt: skip
        try:
            meta = self._consumer.list_topics(EVENTS.name, timeout=timeout).topics[EVENTS.name]
            if meta.error is not None:
                raise KafkaException(meta.error)
            self.partitions = sorted(meta.partitions)
            self.ends = {
                p: self._consumer.get_watermark_offsets(TopicPartition(EVENTS.name, p), timeout=timeout)[1]
                for p in self.partitions
            }
        except KafkaException as exc:
            self._consumer.close()
            raise ConnectionError(f"kafka: {exc}") from None

    def starts(
        self, since: datetime | None, from_beginning: bool, offsets: dict[int, int] | None = None
    ) -> dict[int, int]:
        """Offsets to read from: given ones (a partition not named: none of it), the first record at or after
        `since`, the beginning, or the end (follow)."""
        if offsets:
            return {p: min(offsets[p], self.ends[p]) if p in offsets else self.ends[p] for p in self.partitions}
        if since is not None:
            ms = _millis(since)
            found = self._consumer.offsets_for_times([TopicPartition(EVENTS.name, p, ms) for p in self.partitions], 15)
            return {tp.partition: tp.offset if tp.offset >= 0 else self.ends[tp.partition] for tp in found}
        if from_beginning:
            return dict.fromkeys(self.partitions, OFFSET_BEGINNING)
        return dict(self.ends)

    def stop_at(self, until: datetime) -> None:
        """Narrow `ends` to the first record at or after `until` in each partition (by the records' Kafka
        timestamps, as `starts` finds `since`)."""
        ms = _millis(until)
        found = self._consumer.offsets_for_times([TopicPartition(EVENTS.name, p, ms) for p in self.partitions], 15)
        for tp in found:
            if 0 <= tp.offset < self.ends[tp.partition]:
                self.ends[tp.partition] = tp.offset

    def read(self, starts: dict[int, int], *, until_end: bool, poll: float = 0.5) -> Iterator[LogRecord | None]:
        """Records from `starts`; None after each empty poll (a chance to stop). `until_end`: stop once every
        partition is past `ends` (transaction markers count), and yield nothing at or past them."""
        self._consumer.assign([TopicPartition(EVENTS.name, p, o) for p, o in starts.items()])
        pending = {p for p in self.partitions if self.ends[p] > 0 and starts[p] != self.ends[p]}
        while not until_end or pending:
            msgs = consume_now(self._consumer, 500, poll)
            for m in msgs:
                if m.error() is not None:
                    continue
                if until_end and int(m.offset() or 0) >= self.ends[int(m.partition() or 0)]:
                    continue  # written after the export began, or at/after --until
                try:
                    yield decode(m.value(), LogRecord)
                except SerdeError as exc:  # a record this version cannot read: skipped, as the services do
                    self.skipped += 1
                    self.skip_reason = self.skip_reason or str(exc)
            if not msgs:
                yield None
            if until_end:
                at = self._consumer.position([TopicPartition(EVENTS.name, p) for p in pending])
                pending -= {tp.partition for tp in at if tp.offset >= self.ends[tp.partition]}

    def remaining(self, starts: dict[int, int]) -> int:
        """Records (and markers) between `starts` and `ends`: the export's progress total."""
        total = 0
        for p in self.partitions:
            start = starts[p]
            if start == OFFSET_BEGINNING:
                start = self._consumer.get_watermark_offsets(TopicPartition(EVENTS.name, p), timeout=15)[0]
            total += max(self.ends[p] - start, 0)
        return total

    def close(self) -> None:
        self._consumer.close()
