"""Exactly-once consume → transform → produce on Kafka transactions (KIP-447).

One transaction per consumed batch carries the handler's output records, its state changelog
writes and the input offsets, so a crash at any point leaves either all of them or none.
State lives in the handler's memory and is rebuilt from the compacted changelog whenever a
partition is (re)assigned or a transaction fails. Fencing of a zombie (a member that lost its
partitions but still runs) comes from the consumer group generation carried by
``send_offsets_to_transaction``, which is why every committed transaction sends offsets.

With :mod:`mailstream.events.kafka`, the only module that imports confluent_kafka.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from mailstream.events.kafka import BATCHED_FETCH, consume_now, producer_config
from mailstream.observability.logs import get_logger

log = get_logger(__name__)

_T = TypeVar("_T")
_RETRIES = 3


class ProcessorFatalError(RuntimeError):
    """The processor cannot go on (fenced, fatal client error, transaction outcome unknown)."""


class _Stopping(Exception):
    """Stop was requested while a restore waited for an open transaction to end."""


@dataclass(frozen=True, slots=True)
class Write:
    topic: str
    partition: int | None  # None: placed by key (murmur2)
    key: bytes
    value: bytes | None  # None: tombstone


class Output:
    """Collects one transaction's writes.

    The processor streams each write into the open transaction as it is made. Built without
    a sink (handler unit tests), it keeps them in ``writes``.
    """

    def __init__(self, changelog: str, sink: Callable[[Write], None] | None = None) -> None:
        self.changelog = changelog
        self.writes: list[Write] = []
        self._sink = sink if sink is not None else self.writes.append

    def send(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        if topic == self.changelog:
            raise ValueError("state goes through put(), not send()")
        self._sink(Write(topic, partition, key, value))

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """State changelog write for an owned partition; None deletes the key."""
        self._sink(Write(self.changelog, partition, key, value))


class PartitionHandler(Protocol):
    """Partitioned, in-memory state machine; its state changes are durable only through ``out.put``.

    After a failed transaction the processor calls ``revoked`` and then ``assigned`` again with the
    committed state, so any change not mirrored by a put is lost there (as it would be in a crash).
    ``on_record`` gets b"" for an input tombstone. ``on_tick`` runs after the batch's records, only
    while the member owns partitions, once ``tick_interval`` has passed on the injected clock.
    """

    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None: ...

    def revoked(self, partition: int) -> None: ...

    def on_record(self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime,
                  out: Output) -> None: ...

    def on_tick(self, now: datetime, out: Output) -> None: ...


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

    A record the handler fails on stops the processor (the batch aborted), unless ``dead_letter``
    names a topic: then the failed batch is replayed one record per transaction, and the record that
    fails alone is written there (with the error and its origin in headers) instead of being handled.

    A busy stage gathers records for up to ``commit_interval`` seconds after its last commit before it
    commits again (a transaction costs the broker a marker per partition written, whatever it carries).

    An output larger than ``max_message_bytes`` (keep it at most the topics' ``max.message.bytes``)
    is refused by ``produce()`` and aborts the batch like any other abortable error.
    """

    def __init__(self, *, bootstrap: str, group_id: str, inputs: Sequence[str], changelog: str, partitions: int,
                 handler: PartitionHandler, clock: Callable[[], datetime], tick_interval: float = 1.0,
                 max_batch: int = 500, transaction_timeout_ms: int = 10_000, name: str = "processor",
                 session_timeout_ms: int = 6_000, poll_timeout: float = 0.1,
                 max_message_bytes: int = 1024 * 1024, dead_letter: str | None = None,
                 commit_interval: float = 0.05) -> None:
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
        self._dead_letter = dead_letter
        # After a handler failure: one record per transaction up to these offsets, to find the culprit.
        self._careful_until: dict[tuple[str, int], int] = {}
        self._poison: tuple[str, int, int, str] | None = None  # topic, partition, offset, error
        self._dead_lettered = 0
        self._name = name
        self._transactional_id = f"{group_id}-{uuid.uuid4()}"
        # A pending transaction of a dead member holds back committed offsets and the changelog's
        # last stable offset until the coordinator aborts it: transaction timeout + its abort scan
        # (broker default 10 s).
        self._wait_s = transaction_timeout_ms / 1000 + 60.0
        self._log = log.bind(processor=name, group=group_id)

        self._clients: _Clients | None = None  # while run() runs
        self._stop = threading.Event()

        self._owned: frozenset[int] = frozenset()
        self._start: dict[tuple[str, int], int] = {}  # offset to commit for an input partition not yet read
        self._joined = False
        self._last_ok = True
        self._in_txn = False
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
        return self._dead_lettered

    @property
    def transactional_id(self) -> str:
        return self._transactional_id

    # -- main loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set; then leave the group. Raises ProcessorFatalError or a
        handler's exception (after aborting that batch's transaction)."""
        self._stop = stop
        self._clients = self._open_clients()
        consumer, producer = self._clients.consumer, self._clients.producer
        try:
            self._check_topics()
            self._retrying("init_transactions", lambda: producer.init_transactions(self._wait_s))
            consumer.subscribe(self._inputs, on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
            self._log.info("processor_started", transactional_id=self._transactional_id, inputs=self._inputs,
                           changelog=self._changelog)
            last_tick = self._clock()
            while not stop.is_set():
                records = self._gather(consumer)
                now = self._clock()
                tick = bool(self._owned) and (now - last_tick >= self._tick_interval or now < last_tick)
                if tick:
                    last_tick = now
                if records or tick:
                    self._transact(records, now, tick)
        except _Stopping:
            self._log.info("stopped_during_restore")
        finally:
            self._close()

    def _gather(self, consumer: Consumer) -> list[Message]:
        """The next batch: records as soon as there are some, then more until ``commit_interval`` has passed
        since the last commit. Every transaction costs the broker a marker per partition it wrote, whatever
        it carries, so a busy stage commits fuller transactions instead of more of them."""
        if self._careful_until:
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
                    self._log.error("record_of_unowned_partition", topic=msg.topic(), partition=msg.partition(),
                                    offset=msg.offset())
            elif err.fatal():
                raise ProcessorFatalError(f"consumer: {err.str()}")
            else:
                self._log.warning("consumer_error", code=err.name(), error=err.str())
        return records

    def _transact(self, records: list[Message], now: datetime, tick: bool) -> None:
        out = Output(self._changelog, self._write)
        current: Message | None = None
        try:
            if records:
                self._begin()  # offsets must be committed even if the handler writes nothing
            for current in records:
                if self._is_poison(current):
                    self._divert(current)
                    continue
                self._handler.on_record(current.partition() or 0, current.topic() or "", current.key(),
                                        current.value() or b"", now, out)
            current = None
            if tick:
                self._handler.on_tick(now, out)
        except KafkaException as exc:
            self._transaction_failed(exc)
            return
        except Exception as exc:
            if self._in_txn:
                self._abort("handler_error")
            if self._dead_letter is None or current is None:
                raise
            self._isolate(records, current, exc)
            return
        if not self._in_txn:
            return  # an idle tick: nothing to commit
        try:
            self._commit()
        except KafkaException as exc:
            self._transaction_failed(exc)
            return
        self._records_processed += len(records)
        self._committed += 1
        self._last_commit = time.monotonic()
        self._failures = 0
        self._last_ok = True
        for msg in records:
            tp = (msg.topic() or "", msg.partition() or 0)
            if tp in self._careful_until and (msg.offset() or 0) >= self._careful_until[tp]:
                del self._careful_until[tp]

    def _isolate(self, records: list[Message], failed: Message, exc: Exception) -> None:
        """Rewind after a handler failure; replay the batch record by record, or divert the one record
        that failed alone."""
        self._recover()
        where = (failed.topic() or "", failed.partition() or 0, failed.offset() or 0)
        if len(records) == 1:
            self._poison = (*where, f"{type(exc).__name__}: {exc}")
            self._log.error("poison_record", topic=where[0], partition=where[1], offset=where[2],
                            error=self._poison[3], dead_letter=self._dead_letter)
            return
        for msg in records:
            tp = (msg.topic() or "", msg.partition() or 0)
            self._careful_until[tp] = max(self._careful_until.get(tp, -1), msg.offset() or 0)
        self._log.warning("handler_failed_isolating", topic=where[0], partition=where[1], offset=where[2],
                          error=f"{type(exc).__name__}: {exc}", records=len(records))

    def _is_poison(self, msg: Message) -> bool:
        return self._poison is not None and self._poison[:3] == (msg.topic(), msg.partition(), msg.offset())

    def _divert(self, msg: Message) -> None:
        """Write the poison record to the dead-letter topic in this transaction; its offset commits with it."""
        assert self._poison is not None
        assert self._dead_letter is not None
        topic, partition, offset, error = self._poison
        headers: list[tuple[str, str | bytes | None]] = [
            ("error", error), ("topic", topic), ("partition", str(partition)), ("offset", str(offset)),
            ("processor", self._name)]
        self._begin()
        self._kafka.producer.produce(self._dead_letter, key=msg.key(), value=msg.value(), headers=headers)
        self._poison = None
        self._dead_lettered += 1

    def _write(self, w: Write) -> None:
        if w.topic == self._changelog and w.partition not in self._owned:
            raise ValueError(f"state write for partition {w.partition}, which this member does not own")
        self._begin()
        producer = self._kafka.producer
        extra: dict[str, Any] = {} if w.partition is None else {"partition": w.partition}
        while True:
            try:
                producer.produce(w.topic, value=w.value, key=w.key, **extra)
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def _begin(self) -> None:
        if not self._in_txn:
            self._kafka.producer.begin_transaction()
            self._in_txn = True

    def _commit(self) -> None:
        consumer, producer = self._kafka.consumer, self._kafka.producer
        offsets = self._offsets()
        metadata = consumer.consumer_group_metadata()
        self._retrying("send_offsets_to_transaction",
                       lambda: producer.send_offsets_to_transaction(offsets, metadata, self._wait_s))
        try:
            self._retrying("commit_transaction", lambda: producer.commit_transaction(self._wait_s))
        except KafkaException as exc:
            err = _error(exc)
            if err is not None and err.retriable() and not err.txn_requires_abort() and not err.fatal():
                # Still timing out after retries: the commit may or may not have happened, so neither
                # state nor offsets can be trusted. A restart restores both from Kafka.
                self._last_ok = False
                raise ProcessorFatalError(f"commit_transaction outcome unknown: {err.str()}") from exc
            raise
        self._in_txn = False
        producer.poll(0)

    def _offsets(self) -> list[TopicPartition]:
        """Next offset of every owned input partition, read or not: the group generation they
        carry is what fences a zombie."""
        tps = [TopicPartition(t, p) for t in self._inputs for p in sorted(self._owned)]
        return [TopicPartition(tp.topic, tp.partition,
                               tp.offset if tp.offset >= 0 else self._start[(tp.topic, tp.partition)])
                for tp in self._kafka.consumer.position(tps)]

    def _retrying(self, what: str, op: Callable[[], _T]) -> _T:
        for attempt in range(1, _RETRIES + 1):
            try:
                return op()
            except KafkaException as exc:
                err = _error(exc)
                if err is None or not err.retriable() or err.fatal() or err.txn_requires_abort() \
                        or attempt == _RETRIES:
                    raise
                self._log.warning("kafka_retry", op=what, attempt=attempt, code=err.name(), error=err.str())
        raise AssertionError("unreachable")

    def _transaction_failed(self, exc: KafkaException) -> None:
        """Abort and rewind on any non-fatal error (abortable, or a produce refused because the
        transaction already failed); fatal errors end the processor."""
        err = _error(exc)
        if err is not None and not err.fatal():
            self._abort("kafka_error", code=err.name(), error=err.str(), requires_abort=err.txn_requires_abort())
            self._recover()
            if self._failures > 1:  # a record that fails every time (say, oversized output) must not spin
                self._stop.wait(min(0.05 * 2 ** self._failures, 5.0))
            return
        self._last_ok = False
        detail = err.str() if err is not None else str(exc)
        self._log.error("transaction_failed", fatal=True, code=err.name() if err else None, error=detail)
        if err is not None and err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            raise ProcessorFatalError(f"producer {self._transactional_id} fenced: {detail}") from exc
        raise ProcessorFatalError(f"fatal Kafka error: {detail}") from exc

    def _abort(self, reason: str, **fields: Any) -> None:
        producer = self._kafka.producer
        self._last_ok = False
        self._aborted += 1
        self._failures += 1
        self._log.warning("transaction_aborted", reason=reason, in_a_row=self._failures, **fields)
        try:
            self._retrying("abort_transaction", lambda: producer.abort_transaction(self._wait_s))
        except KafkaException as exc:
            raise ProcessorFatalError(f"abort_transaction failed: {exc}") from exc
        finally:
            self._in_txn = False

    def _recover(self) -> None:
        """After an abort the handler may be ahead of the committed state: rebuild it and rewind."""
        owned, self._owned = sorted(self._owned), frozenset()  # the handler holds none until restored
        for p in owned:
            self._handler.revoked(p)
        self._take(owned)
        self._owned = frozenset(owned)
        self._seek_to_start()
        self._log.info("state_recovered", partitions=owned)

    def _seek_to_start(self) -> None:
        for t in self._inputs:
            for p in sorted(self._owned):
                self._kafka.consumer.seek(TopicPartition(t, p, self._start[(t, p)]))

    # -- rebalance ---------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        owned = self._co_partitioned(tps)
        self._generation += 1
        started = time.monotonic()
        restored = self._take(owned)
        consumer.assign([TopicPartition(t, p, self._start[(t, p)]) for t in self._inputs for p in owned])
        self._owned = frozenset(owned)
        self._joined = True
        self._log.info("partitions_assigned", partitions=owned, state_keys=restored,
                       restore_ms=round((time.monotonic() - started) * 1000))

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._drop("partitions_revoked")

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self._drop("partitions_lost")

    def _drop(self, event: str) -> None:
        owned, self._owned = sorted(self._owned), frozenset()
        self._generation += 1
        self._joined = False
        self._careful_until.clear()  # a new owner finds a bad record again by itself
        self._poison = None
        for p in owned:
            self._handler.revoked(p)
        self._log.info(event, partitions=owned)

    def _co_partitioned(self, tps: list[TopicPartition]) -> list[int]:
        by_partition: dict[int, set[str]] = {}
        for tp in tps:
            by_partition.setdefault(tp.partition, set()).add(tp.topic)
        for p, topics in by_partition.items():
            if topics != set(self._inputs) or not 0 <= p < self._partitions:
                raise ProcessorFatalError(f"partition {p} assigned for {sorted(topics)}, expected all of "
                                          f"{self._inputs} (co-partitioned, range assignor)")
        return sorted(by_partition)

    def _take(self, owned: list[int]) -> dict[int, int]:
        """Committed offsets, then state, of partitions becoming ours; returns keys restored per partition.

        Order matters: with read_committed the offset fetch waits for a pending transactional
        offset commit (a dead member's transaction) to resolve, after which no transaction that
        could still commit writes to these changelog partitions.
        """
        consumer, watermarks = self._kafka.consumer, self._kafka.watermarks
        tps = [TopicPartition(t, p) for t in self._inputs for p in owned]
        try:
            committed = consumer.committed(tps, timeout=self._wait_s) if tps else []
        except KafkaException as exc:
            raise ProcessorFatalError(f"committed offsets of partitions {owned}: {exc}") from exc
        for tp in committed:
            if tp.error is not None:
                raise ProcessorFatalError(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
            offset = tp.offset
            if offset < 0:  # nothing committed: from the earliest record still there
                offset = watermarks.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), self._wait_s)[0]
            self._start[(tp.topic, tp.partition)] = offset
        states = self._restore(owned)
        for p in owned:
            self._handler.assigned(p, states[p])
        return {p: len(states[p]) for p in owned}

    def _restore(self, owned: list[int]) -> dict[int, dict[bytes, bytes]]:
        """Latest value per key of each changelog partition, read_committed, up to its end.

        The end is the high watermark taken now (read_uncommitted, so it counts open transactions).
        read_committed fetching stops at the last stable offset, and the position moves past
        control records and aborted batches, so position >= end means everything before it is
        resolved and read. An open transaction holds the position back until it ends.
        """
        restorer, watermarks = self._kafka.restorer, self._kafka.watermarks
        states: dict[int, dict[bytes, bytes]] = {p: {} for p in owned}
        ends: dict[int, int] = {}
        for p in owned:
            low, high = watermarks.get_watermark_offsets(TopicPartition(self._changelog, p), self._wait_s)
            if high > low:  # else empty (or compacted away)
                ends[p] = high
        pending = set(ends)
        if not pending:
            return states
        restorer.assign([TopicPartition(self._changelog, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + self._wait_s
        next_report = time.monotonic() + 5.0
        try:
            while pending:
                for msg in restorer.consume(10_000, 0.05):
                    err, key, p = msg.error(), msg.key(), msg.partition() or 0
                    if err is not None:
                        if err.fatal():
                            raise ProcessorFatalError(f"restore consumer: {err.str()}")
                        continue
                    if key is None or (msg.offset() or 0) >= ends[p]:
                        continue  # a finished partition reads on while others catch up
                    value = msg.value()
                    if value is None:
                        states[p].pop(key, None)
                    else:
                        states[p][key] = value
                positions = restorer.position([TopicPartition(self._changelog, p) for p in sorted(pending)])
                pending -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
                now = time.monotonic()
                if pending and self._stop.is_set():
                    raise _Stopping
                if pending and now > deadline:
                    raise ProcessorFatalError(f"changelog {self._changelog} partitions {sorted(pending)} not "
                                              f"restorable within {self._wait_s:.0f}s (transaction left open?)")
                if pending and now > next_report:
                    next_report = now + 5.0
                    self._log.info("restore_waiting", ends={p: ends[p] for p in pending},
                                   positions={tp.partition: tp.offset for tp in positions if tp.partition in pending})
        finally:
            restorer.unassign()
        return states

    # -- clients -------------------------------------------------------------------------------------

    @property
    def _kafka(self) -> _Clients:
        if self._clients is None:
            raise RuntimeError("the processor is not running")
        return self._clients

    def _open_clients(self) -> _Clients:
        common = {"bootstrap.servers": self._bootstrap, "client.id": self._name}
        producer = Producer(producer_config(self._bootstrap, **{
            "client.id": self._name,
            "transactional.id": self._transactional_id,
            "transaction.timeout.ms": self._txn_timeout_ms,
            # The next transaction's first requests often meet CONCURRENT_TRANSACTIONS while the
            # coordinator still writes the last one's markers; the 100 ms default backoff halves throughput.
            "retry.backoff.ms": 20,
            # Refuse an oversized output in produce(), before it takes a sequence number: a broker-side
            # refusal leaves a sequence gap that fails the next transaction as well.
            "message.max.bytes": self._max_message_bytes,
        }))
        consumer = Consumer({
            **common,
            "group.id": self._group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Eager range assignment moves partition p of every input together.
            "partition.assignment.strategy": "range",
            "session.timeout.ms": self._session_timeout_ms,
            "heartbeat.interval.ms": max(100, self._session_timeout_ms // 6),
            **BATCHED_FETCH,
        })
        # Outside the group: assign() only, never commits (librdkafka still wants a group.id).
        restorer = Consumer({
            **common,
            "group.id": f"{self._group_id}.restore",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        })
        watermarks = Consumer({
            **common,
            "group.id": f"{self._group_id}.restore",
            "isolation.level": "read_uncommitted",  # the true high watermark, not the last stable offset
            "enable.auto.commit": False,
        })
        return _Clients(consumer, producer, restorer, watermarks)

    def _check_topics(self) -> None:
        for topic in [*self._inputs, self._changelog]:
            # The restorer asks for the changelog: a client that already knows the partition leaders
            # starts its first restore at once instead of ~0.5 s later.
            client = self._kafka.restorer if topic == self._changelog else self._kafka.consumer
            meta = client.list_topics(topic, timeout=30).topics.get(topic)
            have = len(meta.partitions) if meta is not None and meta.error is None else 0
            if have != self._partitions:
                raise ProcessorFatalError(f"topic {topic} has {have} partitions, expected {self._partitions}")

    def _close(self) -> None:
        clients = self._clients
        if clients is None:
            return
        if self._in_txn:
            self._in_txn = False
            try:
                clients.producer.abort_transaction(10)
            except KafkaException as exc:
                self._log.warning("abort_on_close_failed", error=str(exc))
        try:
            clients.consumer.close()  # revokes (handler.revoked) and leaves the group at once
        except (KafkaException, RuntimeError) as exc:
            self._log.warning("consumer_close_failed", error=str(exc))
        self._owned = frozenset()
        self._joined = False
        clients.restorer.close()
        clients.watermarks.close()
        clients.producer.close()
        self._clients = None
        self._log.info("processor_stopped", records_processed=self._records_processed,
                       transactions_committed=self._committed, transactions_aborted=self._aborted)


@dataclass(frozen=True, slots=True)
class _Clients:
    consumer: Consumer  # the group member
    producer: Producer  # transactional
    restorer: Consumer  # read_committed, assign() only
    watermarks: Consumer  # read_uncommitted, for high watermarks


def _error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None
