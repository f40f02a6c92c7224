"""Records committed together with a consumer group's offsets, for a service that is not a
`TransactionalProcessor` stage: one Kafka transaction (KIP-447, `send_offsets_to_transaction` with the
group's metadata) carries the records and the next offsets, each with a metadata string.

Every blocking client call runs on one daemon thread and has a timeout, so a lost cluster can neither hang
the caller nor keep the process from exiting. Any failure ends the transaction (aborted, or left to the
coordinator's timeout) and raises KafkaUnavailable: the caller keeps its records and offers them again, so
a record may be committed twice (after a commit whose outcome was unknown) but never lost. A producer that
cannot go on (fenced, or its transaction aborted by the coordinator) is replaced by a new one under a new
transactional id on the next commit.

With :mod:`mailstream.events.kafka` and the processor, the only modules that import confluent_kafka.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from mailstream.events.kafka import Bootstrap, EventConsumer, KafkaUnavailable, client_config, producer_config
from mailstream.events.processor.transaction import TransactionStuck, bounded
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record for the transaction, already encoded."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, str], ...] = ()  # a dead letter's error and origin


Checkpoint = dict[tuple[str, int], tuple[int, str]]  # (topic, partition) -> (next offset, metadata)


class _Thread:
    """Runs calls in order on one daemon thread; a call still running when the process exits is abandoned."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def call(self, fn: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        self._jobs.put(job)
        return await future

    def stop(self) -> None:
        self._jobs.put(None)


def _error(exc: Exception) -> KafkaError | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class OffsetTransactions:
    """`commit(records, checkpoint, consumer)`: the records and the consumer group's next offsets, all or none."""

    def __init__(
        self,
        bootstrap: Bootstrap,
        name: str,
        *,
        timeout: float = 5.0,
        transaction_timeout_ms: int = 15_000,
        **extra: Any,
    ) -> None:
        self._bootstrap = bootstrap
        self._name = name
        self._timeout = timeout
        self._config = {
            "transaction.timeout.ms": transaction_timeout_ms,
            "client.id": name,
            "retry.backoff.ms": 20,
            **extra,
        }  # see the processor's producer: markers make the broker busy
        self._producer: Producer | None = None
        self._ready = False  # init_transactions went through
        self._thread = _Thread(f"txn-{name}")
        self._prober: Producer | None = None
        self._probe_thread = self._thread

    async def commit(self, records: Sequence[Outgoing], checkpoint: Checkpoint, consumer: EventConsumer) -> None:
        await self._thread.call(lambda: self._transact(records, checkpoint, consumer))

    async def reachable(self) -> bool:
        """A metadata request answered within the timeout: the cluster is there. Asked by a client and a
        thread of its own, so a transaction stuck in a lost cluster does not hold the answer back."""
        if self._prober is None:
            self._prober = Producer(client_config(self._bootstrap, **{"client.id": f"{self._name}-probe"}))
            self._probe_thread = _Thread(f"probe-{self._name}")
        prober = self._prober

        def ask() -> bool:
            try:
                prober.list_topics(timeout=self._timeout)
            except KafkaException:
                return False
            return True

        return await self._probe_thread.call(ask)

    def _client(self) -> Producer:
        if self._producer is None:
            transactional_id = f"{self._name}-{uuid.uuid4()}"
            self._producer = Producer(
                producer_config(self._bootstrap, **self._config, **{"transactional.id": transactional_id})
            )
            self._ready = False
            log.info("transactional_producer_created", transactional_id=transactional_id)
        if not self._ready:
            try:
                self._producer.init_transactions(self._timeout)  # a timeout may be resumed by calling again
            except KafkaException as exc:
                err = _error(exc)
                if err is None or err.fatal() or not err.retriable():
                    self._producer = None
                raise KafkaUnavailable(f"init_transactions: {exc}") from exc
            self._ready = True
        return self._producer

    def _transact(self, records: Sequence[Outgoing], checkpoint: Checkpoint, consumer: EventConsumer) -> None:
        producer = self._client()
        try:
            producer.begin_transaction()
            for record in records:
                producer.produce(record.topic, key=record.key, value=record.value, headers=list(record.headers))
            if checkpoint:
                offsets = [TopicPartition(t, p, offset, metadata=meta) for (t, p), (offset, meta) in checkpoint.items()]
                self._send_offsets(producer, offsets, consumer.group_metadata())
            producer.commit_transaction(self._timeout)
        except TransactionStuck as exc:
            log.warning("transactional_producer_replaced", error=str(exc))
            self._producer = None  # its open transaction is left to the coordinator's timeout
            raise KafkaUnavailable(f"transaction not committed: {exc}") from exc
        except (KafkaException, BufferError) as exc:
            self._failed(producer, exc)
            raise KafkaUnavailable(f"transaction not committed: {exc}") from exc

    def _send_offsets(self, producer: Producer, offsets: list[TopicPartition], group: object) -> None:
        """Waited for on a thread of its own: after the coordinator went away and came back, librdkafka can
        block in it past its timeout (#5456), and a call that timed out once hangs when made again (the chaos
        run's delivery worker committed nothing for minutes after a broker SIGKILL). Either way nothing was
        committed and the producer is given up (TransactionStuck)."""
        try:
            bounded(lambda: producer.send_offsets_to_transaction(offsets, group, self._timeout), self._timeout + 5.0)
        except KafkaException as exc:
            err = _error(exc)
            if err is not None and err.code() == KafkaError._TIMED_OUT:
                raise TransactionStuck(err.str()) from exc
            raise

    def _failed(self, producer: Producer, exc: Exception) -> None:
        err = _error(exc)
        if err is not None and not err.fatal():
            try:
                producer.abort_transaction(self._timeout)
                return
            except KafkaException as abort_exc:
                exc = abort_exc
        # Fatal, or not even an abort went through (the cluster is gone, or the commit's outcome is still
        # unknown): the coordinator ends the open transaction after its timeout; a new producer goes on.
        log.warning("transactional_producer_replaced", error=str(exc))
        producer.purge()
        self._producer = None

    async def close(self, timeout: float) -> None:
        """Give an open transaction up and let the thread go; waits at most `timeout` seconds."""

        def shut() -> None:
            if self._producer is not None:
                self._producer.purge()
                self._producer.flush(0)

        try:
            await asyncio.wait_for(self._thread.call(shut), timeout)
        except TimeoutError:
            log.warning("transactional_producer_close_timed_out")
        self._thread.stop()
        if self._probe_thread is not self._thread:
            self._probe_thread.stop()
