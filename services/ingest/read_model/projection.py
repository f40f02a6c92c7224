"""mail.accepted and mail.status folded into the message store, on a thread of its own.

Each replica reads every partition of both topics with a consumer of its own (assigned, no group: every
replica needs everything), from the offsets stored beside the rows. A batch's rows and its next offsets are
one SQLite transaction, so a restart, or a kill at any point, resumes exactly where the store stopped: no
record applied twice, none skipped. Within a batch only a transaction's newest status is written.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from mailstream.core.clock import Clock, system_clock
from mailstream.events.codec import read_long
from mailstream.events.kafka import BATCHED_FETCH, Bootstrap, client_config, consume_now
from mailstream.events.records import AcceptedMessage, TransactionStatus
from mailstream.events.serde import SerdeError, decode, registry, writer_of
from mailstream.events.topics import ACCEPTED, STATUS
from mailstream.ingest.read_model.query import ms
from mailstream.ingest.read_model.rows import QueueResolver, accepted_row, status_row
from mailstream.ingest.read_model.store import MessageStore
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
TOPICS = {ACCEPTED.name: ACCEPTED.partitions, STATUS.name: STATUS.partitions}
Consumed = tuple[str, int, int, bytes | None]  # topic, partition, offset, value
MAINTAIN_INTERVAL = timedelta(minutes=10)


def peek_status(value: bytes | None) -> tuple[str, int] | None:
    """(id, version) of a TransactionStatus without decoding it: they are its first two fields in every version
    of the schema. None when the value is not plainly one (it is then decoded in full, and refused there)."""
    try:
        found = writer_of(value)
    except SerdeError:
        return None
    if found is None or value is None or len(value) <= found[1]:
        return None
    known = registry().by_fingerprint.get(found[0])
    if known is None or known[0] != TransactionStatus.schema_name:
        return None
    try:
        length, at = read_long(value, found[1])
        tx_id = value[at : at + length].decode()
        version, _ = read_long(value, at + length)
    except (IndexError, UnicodeDecodeError):
        return None
    return tx_id, version


class Projector:
    """Decodes and applies batches of records; no Kafka here, so the benchmark drives the same code."""

    def __init__(self, store: MessageStore, resolve: QueueResolver) -> None:
        self.store, self.resolve = store, resolve
        self.applied = 0

    def apply(self, records: Iterable[Consumed]) -> int:
        accepted: list[dict[str, Any]] = []
        newest: dict[str, tuple[int, bytes]] = {}  # transaction id -> (version, record)
        offsets: dict[tuple[str, int], int] = {}
        count = 0
        for topic, partition, offset, value in records:
            offsets[(topic, partition)] = max(offsets.get((topic, partition), 0), offset + 1)
            count += 1
            try:
                if topic == ACCEPTED.name:
                    accepted.append(accepted_row(decode(value, AcceptedMessage), self.resolve))
                elif topic == STATUS.name:
                    # Only a transaction's newest status of the batch is decoded: a replay reads several of each.
                    peeked = peek_status(value)
                    if peeked is None:
                        st = decode(value, TransactionStatus)
                        peeked = (st.id, st.version)
                    held = newest.get(peeked[0])
                    if held is None or peeked[1] > held[0]:
                        newest[peeked[0]] = (peeked[1], value or b"")
            except (SerdeError, ValueError) as exc:  # a poison record must not stop the projection
                log.error(
                    "read_model_record_unreadable", topic=topic, partition=partition, offset=offset, error=str(exc)
                )
        rows = []
        for tx_id, (_, value) in newest.items():
            try:
                st = decode(value, TransactionStatus)
            except SerdeError as exc:
                log.error("read_model_unreadable", topic=STATUS.name, transaction=tx_id, error=str(exc))
                continue
            row = status_row(st, self.resolve)
            row["record"] = value
            rows.append(row)
        self.store.apply(accepted, rows, offsets)
        self.applied += count
        return count


class KafkaSource:
    """Every partition of both topics, assigned (no group) from the given offsets; blocking calls."""

    def __init__(self, bootstrap: Bootstrap) -> None:
        self._consumer = Consumer(
            client_config(
                bootstrap,
                **{
                    "group.id": "mailstream-read-model",  # never joined nor committed: partitions are assigned
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    **BATCHED_FETCH,
                },
            )
        )

    def seek(self, start: dict[tuple[str, int], int]) -> None:
        self._consumer.assign(
            [TopicPartition(t, p, start.get((t, p), -2)) for t, n in TOPICS.items() for p in range(n)]  # -2: first
        )

    def poll(self, max_records: int, timeout: float) -> list[Consumed]:
        msgs = consume_now(self._consumer, max_records, timeout)
        return [(m.topic() or "", m.partition() or 0, m.offset() or 0, m.value()) for m in msgs if m.error() is None]

    def close(self) -> None:
        self._consumer.close()


class Projection:
    """The projector fed from Kafka on a daemon thread; `caught_up` is set once a poll finds nothing new."""

    def __init__(
        self,
        projector: Projector,
        bootstrap: Bootstrap,
        batch: int = 2000,
        *,
        clock: Clock = system_clock,
        retention: timedelta | None = None,
    ) -> None:
        self.projector, self.bootstrap, self.batch = projector, bootstrap, batch
        self.clock, self.retention = clock, retention
        self._maintained_at: datetime | None = None
        self.caught_up = threading.Event()
        self.healthy = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="read-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _maintain(self) -> None:
        """Every MAINTAIN_INTERVAL: forget finished messages older than the retention (bounded passes), then
        refresh the planner's statistics."""
        now = self.clock()
        if self._maintained_at is not None and now - self._maintained_at < MAINTAIN_INTERVAL:
            return
        self._maintained_at = now
        if self.retention is not None:
            cutoff = ms(now - self.retention) or 0
            while self.projector.store.prune(cutoff) and not self._stop.is_set():
                pass
        self.projector.store.optimize()

    def run(self) -> None:
        source = KafkaSource(self.bootstrap)
        try:
            source.seek(self.projector.store.offsets())
            while not self._stop.is_set():
                try:
                    self._maintain()
                    batch = source.poll(self.batch, 0.2)
                    if not batch:
                        if not self.caught_up.is_set():  # statistics for what the catch-up wrote
                            self.projector.store.optimize()
                            self.caught_up.set()
                        continue
                    self.projector.apply(batch)
                    self.healthy = True
                except (KafkaException, sqlite3.Error, OSError) as exc:
                    # SQLite or Kafka refused: start again from what the store holds.
                    self.healthy = False
                    log.error("read_model_batch_failed", error=str(exc))
                    self._stop.wait(1.0)
                    source.seek(self.projector.store.offsets())
        finally:
            source.close()
