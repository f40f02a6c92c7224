"""The processor's loop: gather a batch, hand it to the handler, commit it with its offsets; and rebalances."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from mailstream.events.handler import PartitionHandler, PreparesBatches
from mailstream.events.kafka import Bootstrap, consume_now
from mailstream.events.processor.clients import (
    Clients,
    ProcessorFatalError,
    kafka_error,
    retrying,
    transactional_producer,
)
from mailstream.events.processor.dead_letter import DeadLetters, too_large
from mailstream.events.processor.restore import Stopping, read_changelog, starting_offsets
from mailstream.events.processor.transaction import Output, Transaction, TransactionStuck, Write
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


class TransactionalProcessor:
    """Runs a PartitionHandler over co-partitioned input topics with exactly-once output.

    ``run`` is blocking and single-threaded: rebalance callbacks fire inside ``consume()``,
    between transactions, so the handler is never called concurrently. The properties may be
    read from other threads.

    A member that dies inside a transaction leaves it open until the coordinator times it out
    (``transaction_timeout_ms`` plus the broker's abort scan, 10 s by default); the new owner's
    restore waits for that, so a batch must finish well within the transaction timeout, and the
    timeout bounds fail-over time. Handlers must not block: under eager rebalancing the whole
    group waits for a member that does not come back to ``consume()``.

    A record the handler fails on (or cannot read) stops the processor (the batch aborted), unless
    ``dead_letter`` names a topic: then it is set aside there (`dead_letter.DeadLetters`), and so is a
    record whose output is refused as too large (else that aborts and is retried like any abortable error).

    A busy stage gathers records for up to ``commit_interval`` seconds after its last commit before it
    commits again (a transaction costs the broker a marker per partition written, whatever it carries).

    An output larger than ``max_message_bytes`` (keep it at most the topics' ``max.message.bytes``)
    is refused by ``produce()``, so the record being handled made it; one the broker refuses (a topic
    with a lower limit) fails the commit, and the batch is replayed a record at a time to find it.
    A tick's oversized output has no input to set aside: the tick is aborted and tried again later.
    """

    def __init__(
        self,
        *,
        bootstrap: Bootstrap,
        group_id: str,
        inputs: Sequence[str],
        changelog: str,
        partitions: int,
        handler: PartitionHandler,
        clock: Callable[[], datetime],
        tick_interval: float = 1.0,
        max_batch: int = 500,
        transaction_timeout_ms: int = 10_000,
        name: str = "processor",
        session_timeout_ms: int = 6_000,
        poll_timeout: float = 0.1,
        max_message_bytes: int = 1024 * 1024,
        dead_letter: str | None = None,
        commit_interval: float = 0.05,
    ) -> None:
        if not inputs:
            raise ValueError("at least one input topic")
        if changelog in inputs:
            raise ValueError("the changelog cannot be an input")
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._inputs = list(inputs)
        self._changelog = changelog
        self._partitions = partitions
        self._handler = handler
        self._clock = clock
        self._tick_interval = timedelta(seconds=tick_interval)
        self._max_batch = max_batch
        self._txn_timeout_ms = transaction_timeout_ms
        self._session_timeout_ms = session_timeout_ms
        self._poll_timeout = poll_timeout
        self._commit_interval = commit_interval
        self._last_commit = 0.0  # time.monotonic() of the last commit
        self._generation = 0  # counts rebalances, so a batch gathered across one is not used
        self._max_message_bytes = max_message_bytes
        self._name = name
        self._transactional_id = f"{group_id}-{uuid.uuid4()}"
        # A pending transaction of a dead member holds back committed offsets and the changelog's
        # last stable offset until the coordinator aborts it: transaction timeout + its abort scan
        # (broker default 10 s).
        self._wait_s = transaction_timeout_ms / 1000 + 60.0
        self._log = log.bind(processor=name, group=group_id)
        self._dead_letters = DeadLetters(dead_letter, name, self._log)

        self._clients: Clients | None = None  # while run() runs
        self._txn: Transaction | None = None  # likewise
        self._stop = threading.Event()

        self._owned: frozenset[int] = frozenset()
        self._start: dict[tuple[str, int], int] = {}  # offset to commit for an input partition not yet read
        self._joined = False
        self._last_ok = True
        self._failures = 0  # transactions aborted in a row
        self._records_processed = 0
        self._committed = 0
        self._aborted = 0

    # -- observability ---------------------------------------------------------------------------

    @property
    def assigned(self) -> frozenset[int]:
        return self._owned

    @property
    def healthy(self) -> bool:
        """Member of the group with an assignment, and the last transaction committed."""
        return self._joined and self._last_ok

    @property
    def records_processed(self) -> int:
        return self._records_processed

    @property
    def transactions_committed(self) -> int:
        return self._committed

    @property
    def transactions_aborted(self) -> int:
        return self._aborted

    @property
    def name(self) -> str:
        return self._name

    @property
    def records_dead_lettered(self) -> int:
        return self._dead_letters.count

    @property
    def transactional_id(self) -> str:
        return self._transactional_id

    # -- main loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set; then leave the group. Raises ProcessorFatalError or a
        handler's exception (after aborting that batch's transaction)."""
        self._stop = stop
        self._clients = Clients.open(
            bootstrap=self._bootstrap,
            group_id=self._group_id,
            name=self._name,
            transactional_id=self._transactional_id,
            transaction_timeout_ms=self._txn_timeout_ms,
            session_timeout_ms=self._session_timeout_ms,
            max_message_bytes=self._max_message_bytes,
        )
        self._txn = Transaction(self._clients.producer, self._wait_s, self._log)
        consumer, producer = self._clients.consumer, self._clients.producer
        try:
            self._clients.check_topics(self._inputs, self._changelog, self._partitions)
            retrying("init_transactions", lambda: producer.init_transactions(self._wait_s), self._log)
            consumer.subscribe(
                self._inputs, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            self._log.info(
                "processor_started",
                transactional_id=self._transactional_id,
                inputs=self._inputs,
                changelog=self._changelog,
            )
            last_tick = self._clock()
            while not stop.is_set():
                records = self._gather(consumer)
                now = self._clock()
                # No tick while a failed batch is replayed record by record: a refusal then names its record.
                tick = (
                    bool(self._owned)
                    and not self._dead_letters.careful
                    and (now - last_tick >= self._tick_interval or now < last_tick)
                )
                if tick:
                    last_tick = now
                if records or tick:
                    self._transact(records, now, tick)
        except Stopping:
            self._log.info("stopped_during_restore")
        finally:
            self._close()

    def _gather(self, consumer: Consumer) -> list[Message]:
        """The next batch: records as soon as there are some, then more until ``commit_interval`` has passed
        since the last commit. Every transaction costs the broker a marker per partition it wrote, whatever
        it carries, so a busy stage commits fuller transactions instead of more of them."""
        if self._dead_letters.careful:
            return self._usable(consume_now(consumer, 1, self._poll_timeout))
        records = self._usable(consume_now(consumer, self._max_batch, self._poll_timeout))
        generation = self._generation
        while records and len(records) < self._max_batch:
            remaining = self._last_commit + self._commit_interval - time.monotonic()
            if remaining <= 0:
                break
            more = self._usable(consumer.consume(self._max_batch - len(records), remaining))
            if self._generation != generation:  # a rebalance rewound the partitions: read again from there
                return more
            records.extend(more)
        return records

    def _usable(self, msgs: list[Message]) -> list[Message]:
        # librdkafka drops records fetched before a revoke or seek from the batch being built (version
        # barriers), so every record here belongs to the current assignment; the check is a tripwire.
        records: list[Message] = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                if msg.partition() in self._owned:
                    records.append(msg)
                else:
                    self._log.error(
                        "record_of_unowned_partition", topic=msg.topic(), partition=msg.partition(), offset=msg.offset()
                    )
            elif err.fatal():
                raise ProcessorFatalError(f"consumer: {err.str()}")
            else:
                self._log.warning("consumer_error", code=err.name(), error=err.str())
        return records

    def _transact(self, records: list[Message], now: datetime, tick: bool) -> None:
        txn = self._transaction
        out = Output(self._changelog, self._write)
        current: Message | None = None
        if isinstance(self._handler, PreparesBatches):  # its I/O before the transaction, not inside it
            self._handler.prepare([(r.partition() or 0, r.topic() or "", r.value() or b"") for r in records], now)
        try:
            if records:
                txn.begin()  # offsets must be committed even if the handler writes nothing
            for current in records:
                if self._dead_letters.divert(current, txn):
                    continue
                self._handler.on_record(
                    current.partition() or 0, current.topic() or "", current.key(), current.value() or b"", now, out
                )
            current = None
            if tick:
                self._handler.on_tick(now, out)
        except KafkaException as exc:
            if current is not None and self._oversized(exc, records, current):
                return
            self._transaction_failed(exc)
            return
        except Exception as exc:
            if txn.open:
                self._abort("handler_error")
            if self._dead_letters.topic is None or current is None:
                raise
            self._recover()
            self._dead_letters.isolate(records, current, exc)
            return
        if not txn.open:
            return  # an idle tick: nothing to commit
        try:
            self._commit()
        except TransactionStuck as exc:
            self._replace_producer(str(exc))
            return
        except KafkaException as exc:
            # Refused at commit: some record of the batch, or the tick, made it (alone and tickless: that record).
            if records and self._oversized(exc, records, records[0] if len(records) == 1 and not tick else None):
                return
            self._transaction_failed(exc)
            return
        self._records_processed += len(records)
        self._committed += 1
        self._last_commit = time.monotonic()
        self._failures = 0
        self._last_ok = True
        self._dead_letters.committed(records)

    def _oversized(self, exc: KafkaException, records: list[Message], failed: Message | None) -> bool:
        """An output refused as too large fails the same way every time: set aside the input that made it
        (`failed`, or the one found by replaying `records` alone), as for a handler failure. False: not
        that, or no dead-letter topic, so the caller aborts and retries."""
        if not too_large(exc) or self._dead_letters.topic is None:
            return False
        err = kafka_error(exc)
        self._abort("output_too_large", error=err.str() if err is not None else str(exc))
        self._recover()
        self._dead_letters.isolate(records, failed, exc)
        return True

    def _write(self, w: Write) -> None:
        if w.topic == self._changelog and w.partition not in self._owned:
            raise ValueError(f"state write for partition {w.partition}, which this member does not own")
        self._transaction.produce(w.topic, w.key, w.value, w.partition)

    def _commit(self) -> None:
        try:
            self._transaction.commit(self._offsets(), self._kafka.consumer.consumer_group_metadata())
        except ProcessorFatalError:
            self._last_ok = False
            raise

    def _offsets(self) -> list[TopicPartition]:
        """Next offset of every owned input partition, read or not: the group generation they
        carry is what fences a zombie."""
        tps = [TopicPartition(t, p) for t in self._inputs for p in sorted(self._owned)]
        return [
            TopicPartition(
                tp.topic, tp.partition, tp.offset if tp.offset >= 0 else self._start[(tp.topic, tp.partition)]
            )
            for tp in self._kafka.consumer.position(tps)
        ]

    def _transaction_failed(self, exc: KafkaException) -> None:
        """Abort and rewind on any non-fatal error (abortable, or a produce refused because the
        transaction already failed); fatal errors end the processor."""
        err = kafka_error(exc)
        if err is not None and not err.fatal():
            self._abort("kafka_error", code=err.name(), error=err.str(), requires_abort=err.txn_requires_abort())
            self._recover()
            if self._failures > 1:  # a record that fails every time (say, oversized output) must not spin
                self._stop.wait(min(0.05 * 2**self._failures, 5.0))
            return
        self._last_ok = False
        detail = err.str() if err is not None else str(exc)
        self._log.error("transaction_failed", fatal=True, code=err.name() if err else None, error=detail)
        if err is not None and err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            raise ProcessorFatalError(f"producer {self._transactional_id} fenced: {detail}") from exc
        raise ProcessorFatalError(f"fatal Kafka error: {detail}") from exc

    def _replace_producer(self, error: str) -> None:
        """Give up a producer whose transaction is stuck (left open, for the coordinator to abort at its timeout)
        and go on with a new one under a new transactional id, from the committed state and offsets."""
        self._last_ok = False
        self._aborted += 1
        old, self._transactional_id = self._transactional_id, f"{self._group_id}-{uuid.uuid4()}"
        self._log.warning("producer_replaced", error=error, abandoned=old, transactional_id=self._transactional_id)
        producer = transactional_producer(
            self._bootstrap, self._name, self._transactional_id, self._txn_timeout_ms, self._max_message_bytes
        )
        retrying("init_transactions", lambda: producer.init_transactions(self._wait_s), self._log)
        self._clients = dataclasses.replace(self._kafka, producer=producer)
        self._txn = Transaction(producer, self._wait_s, self._log)
        self._recover()

    def _abort(self, reason: str, **fields: Any) -> None:
        self._last_ok = False
        self._aborted += 1
        self._failures += 1
        self._log.warning("transaction_aborted", reason=reason, in_a_row=self._failures, **fields)
        self._transaction.abort()

    def _recover(self) -> None:
        """After an abort the handler may be ahead of the committed state: rebuild it and rewind."""
        owned, self._owned = sorted(self._owned), frozenset()  # the handler holds none until restored
        for p in owned:
            self._handler.revoked(p)
        self._take(owned)
        self._owned = frozenset(owned)
        for t in self._inputs:
            for p in owned:
                self._kafka.consumer.seek(TopicPartition(t, p, self._start[(t, p)]))
        self._log.info("state_recovered", partitions=owned)

    # -- rebalance ---------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        owned = self._co_partitioned(tps)
        self._generation += 1
        started = time.monotonic()
        restored = self._take(owned)
        consumer.assign([TopicPartition(t, p, self._start[(t, p)]) for t in self._inputs for p in owned])
        self._owned = frozenset(owned)
        self._joined = True
        self._log.info(
            "partitions_assigned",
            partitions=owned,
            state_keys=restored,
            restore_ms=round((time.monotonic() - started) * 1000),
        )

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._drop("partitions_revoked")

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._drop("partitions_lost")

    def _drop(self, event: str) -> None:
        owned, self._owned = sorted(self._owned), frozenset()
        self._generation += 1
        self._joined = False
        self._dead_letters.forget()
        for p in owned:
            self._handler.revoked(p)
        self._log.info(event, partitions=owned)

    def _co_partitioned(self, tps: list[TopicPartition]) -> list[int]:
        by_partition: dict[int, set[str]] = {}
        for tp in tps:
            by_partition.setdefault(tp.partition, set()).add(tp.topic)
        for p, topics in by_partition.items():
            if topics != set(self._inputs) or not 0 <= p < self._partitions:
                raise ProcessorFatalError(
                    f"partition {p} assigned for {sorted(topics)}, expected all of "
                    f"{self._inputs} (co-partitioned, range assignor)"
                )
        return sorted(by_partition)

    def _take(self, owned: list[int]) -> dict[int, int]:
        """Committed offsets, then state, of partitions becoming ours (`restore`); returns keys restored per
        partition."""
        clients = self._kafka
        tps = [TopicPartition(t, p) for t in self._inputs for p in owned]
        self._start.update(starting_offsets(clients.consumer, clients.watermarks, tps, self._wait_s))
        states = read_changelog(
            clients.restorer, clients.watermarks, self._changelog, owned, self._wait_s, self._stop, self._log
        )
        for p in owned:
            self._handler.assigned(p, states[p])
        return {p: len(states[p]) for p in owned}

    # -- clients -------------------------------------------------------------------------------------

    @property
    def _kafka(self) -> Clients:
        if self._clients is None:
            raise RuntimeError("the processor is not running")
        return self._clients

    @property
    def _transaction(self) -> Transaction:
        if self._txn is None:
            raise RuntimeError("the processor is not running")
        return self._txn

    def _close(self) -> None:
        clients = self._clients
        if clients is None:
            return
        self._transaction.abandon()
        clients.close(self._log)
        self._owned = frozenset()
        self._joined = False
        self._clients = self._txn = None
        self._log.info(
            "processor_stopped",
            records_processed=self._records_processed,
            transactions_committed=self._committed,
            transactions_aborted=self._aborted,
        )
