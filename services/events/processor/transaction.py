"""One Kafka transaction: what it carries (outputs, changelog writes, the input offsets) and how it ends."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from structlog.typing import FilteringBoundLogger

from mailstream.events.processor.clients import ProcessorFatalError, kafka_error, retrying

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True, slots=True)
class Write:
    topic: str
    partition: int | None  # None: placed by key (murmur2)
    key: bytes
    value: bytes | None  # None: tombstone


class Output:
    """Collects one transaction's writes (a `mailstream.events.handler.Writes`).

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


OFFSETS_DEADLINE = 20.0  # seconds send_offsets_to_transaction may take before its producer is given up


class TransactionStuck(RuntimeError):
    """send_offsets_to_transaction timed out or did not return at all (librdkafka can block past its timeout
    once the coordinator went away and came back, confluentinc/librdkafka#5456; a broker SIGKILL in the chaos
    run left both stages there for minutes). Nothing was committed, but the producer cannot be trusted: the
    processor replaces it and restores, and the coordinator aborts the abandoned transaction."""


def bounded(call: Callable[[], None], seconds: float) -> None:
    """`call` on a daemon thread of its own, waited for at most `seconds` (TransactionStuck after that); its
    exception is raised here."""
    done: queue.Queue[BaseException | None] = queue.Queue(1)

    def run() -> None:
        try:
            call()
            done.put(None)
        except BaseException as exc:  # handed to the waiting thread
            done.put(exc)

    threading.Thread(target=run, name="txn-call", daemon=True).start()
    try:
        failure = done.get(timeout=seconds)
    except queue.Empty:
        raise TransactionStuck(f"no answer within {seconds:.0f} s") from None
    if failure is not None:
        raise failure


class Transaction:
    """The transactional producer's side: a transaction begins with its first write and commits with the
    consumed offsets, which carry the group generation that fences a zombie."""

    def __init__(self, producer: Producer, wait_s: float, log: FilteringBoundLogger) -> None:
        self.producer, self.wait_s, self.log = producer, wait_s, log
        self.open = False

    def begin(self) -> None:
        if not self.open:
            self.producer.begin_transaction()
            self.open = True

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.begin()
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        if headers is not None:
            extra["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, **extra)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain

    def commit(self, offsets: list[TopicPartition], metadata: Any) -> None:  # the consumer's group metadata
        """Raises ProcessorFatalError when the outcome cannot be known (a restart restores from Kafka)."""
        producer = self.producer
        timeout = min(self.wait_s, OFFSETS_DEADLINE)

        def send_offsets() -> None:
            try:
                bounded(lambda: producer.send_offsets_to_transaction(offsets, metadata, timeout), timeout + 5.0)
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.code() == KafkaError._TIMED_OUT:  # retrying it is what hangs
                    raise TransactionStuck(err.str()) from exc
                raise

        retrying("send_offsets_to_transaction", send_offsets, self.log)
        try:
            retrying("commit_transaction", lambda: producer.commit_transaction(self.wait_s), self.log)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.retriable() and not err.txn_requires_abort() and not err.fatal():
                # Still timing out after retries: the commit may or may not have happened, so neither
                # state nor offsets can be trusted. A restart restores both from Kafka.
                raise ProcessorFatalError(f"commit_transaction outcome unknown: {err.str()}") from exc
            raise
        self.open = False
        producer.poll(0)

    def abort(self) -> None:
        # Outputs still queued first: an abort right behind a commit, with the new transaction's partitions
        # not yet registered, fails fatally (INVALID_TXN_STATE) with librdkafka 2.x.
        self.producer.flush(self.wait_s)
        try:
            retrying("abort_transaction", lambda: self.producer.abort_transaction(self.wait_s), self.log)
        except KafkaException as exc:
            raise ProcessorFatalError(f"abort_transaction failed: {exc}") from exc
        finally:
            self.open = False

    def abandon(self) -> None:
        """Abort what is open as the processor closes, as best it can."""
        if not self.open:
            return
        self.open = False
        try:
            self.producer.abort_transaction(10)
        except KafkaException as exc:
            self.log.warning("abort_on_close_failed", error=str(exc))
