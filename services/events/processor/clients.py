"""The processor's four Kafka clients, and how their errors are told apart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from structlog.typing import FilteringBoundLogger

from mailstream.events.kafka import BATCHED_FETCH, Bootstrap, client_config, producer_config

_T = TypeVar("_T")
_RETRIES = 3


class ProcessorFatalError(RuntimeError):
    """The processor cannot go on (fenced, fatal client error, transaction outcome unknown)."""


@dataclass(frozen=True, slots=True)
class Clients:
    consumer: Consumer  # the group member
    producer: Producer  # transactional
    restorer: Consumer  # read_committed, assign() only
    watermarks: Consumer  # read_uncommitted, for high watermarks

    @classmethod
    def open(
        cls,
        *,
        bootstrap: Bootstrap,
        group_id: str,
        name: str,
        transactional_id: str,
        transaction_timeout_ms: int,
        session_timeout_ms: int,
        max_message_bytes: int,
    ) -> Clients:
        common = client_config(bootstrap, **{"client.id": name})
        producer = transactional_producer(bootstrap, name, transactional_id, transaction_timeout_ms, max_message_bytes)
        consumer = Consumer(
            {
                **common,
                "group.id": group_id,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # Eager range assignment moves partition p of every input together.
                "partition.assignment.strategy": "range",
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(100, session_timeout_ms // 6),
                **BATCHED_FETCH,
            }
        )
        # Outside the group: assign() only, never commits (librdkafka still wants a group.id).
        restorer = Consumer(
            {
                **common,
                "group.id": f"{group_id}.restore",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        watermarks = Consumer(
            {
                **common,
                "group.id": f"{group_id}.restore",
                "isolation.level": "read_uncommitted",  # the true high watermark, not the last stable offset
                "enable.auto.commit": False,
            }
        )
        return cls(consumer, producer, restorer, watermarks)

    def check_topics(self, inputs: Sequence[str], changelog: str, partitions: int) -> None:
        for topic in [*inputs, changelog]:
            # The restorer asks for the changelog: a client that already knows the partition leaders
            # starts its first restore at once instead of ~0.5 s later.
            client = self.restorer if topic == changelog else self.consumer
            meta = client.list_topics(topic, timeout=30).topics.get(topic)
            have = len(meta.partitions) if meta is not None and meta.error is None else 0
            if have != partitions:
                raise ProcessorFatalError(f"topic {topic} has {have} partitions, expected {partitions}")

    def close(self, log: FilteringBoundLogger) -> None:
        try:
            self.consumer.close()  # revokes (handler.revoked) and leaves the group at once
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer_close_failed", error=str(exc))
        self.restorer.close()
        self.watermarks.close()
        self.producer.close()


def transactional_producer(
    bootstrap: Bootstrap, name: str, transactional_id: str, transaction_timeout_ms: int, max_message_bytes: int
) -> Producer:
    return Producer(
        producer_config(
            bootstrap,
            **{
                "client.id": name,
                "transactional.id": transactional_id,
                "transaction.timeout.ms": transaction_timeout_ms,
                # The next transaction's first requests often meet CONCURRENT_TRANSACTIONS while the
                # coordinator still writes the last one's markers; the 100 ms default backoff halves throughput.
                "retry.backoff.ms": 20,
                # Refuse an oversized output in produce(), before it takes a sequence number: a broker-side
                # refusal leaves a sequence gap that fails the next transaction as well.
                "message.max.bytes": max_message_bytes,
            },
        )
    )


def kafka_error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def retrying(what: str, op: Callable[[], _T], log: FilteringBoundLogger) -> _T:
    """`op`, tried again (up to three times in all) while it fails with a plainly retriable error."""
    for attempt in range(1, _RETRIES + 1):
        try:
            return op()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or not err.retriable() or err.fatal() or err.txn_requires_abort() or attempt == _RETRIES:
                raise
            log.warning("kafka_retry", op=what, attempt=attempt, code=err.name(), error=err.str())
    raise AssertionError("unreachable")
