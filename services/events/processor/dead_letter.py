"""Setting aside an input record the handler cannot handle, instead of failing on it forever.

After a handler failure (a record it cannot read, or one it fails on), or an output the broker refuses
as too large (a topic's `max.message.bytes`: it would be refused every time), the batch is aborted and
replayed one record per transaction up to where it reached, to find the record that fails alone;
that record is then written to the dead-letter topic as it was, with the error and its origin in
headers, in the transaction that commits its offset. None of its state changes is kept: the abort
restored the committed state, and the diverted record never reaches the handler again.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, Message
from structlog.typing import FilteringBoundLogger

from mailstream.events.processor.transaction import Transaction

Where = tuple[str, int, int]  # topic, partition, offset
# Refused for its size, by produce() (the producer's message.max.bytes) or by the broker at commit.
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


def too_large(exc: KafkaException) -> bool:
    """An output refused for its size: the same input would make it again, so retrying cannot help."""
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and err.code() in _TOO_LARGE


def _where(msg: Message) -> Where:
    return msg.topic() or "", msg.partition() or 0, msg.offset() or 0


class DeadLetters:
    def __init__(self, topic: str | None, processor: str, log: FilteringBoundLogger) -> None:
        self.topic, self.processor, self.log = topic, processor, log
        # After a handler failure: one record per transaction up to these offsets, to find the culprit.
        self._careful_until: dict[tuple[str, int], int] = {}
        self._poison: tuple[Where, str] | None = None  # the record that failed alone, and its error
        self.count = 0

    @property
    def careful(self) -> bool:
        """Replaying a failed batch: one record per transaction."""
        return bool(self._careful_until)

    def isolate(self, records: list[Message], failed: Message | None, exc: Exception) -> None:
        """After the failed batch is rewound: replay it record by record, or mark the one record that
        failed alone to be diverted when it comes again. `failed` None: which record failed is not known
        (the broker refused an output at commit), so even a batch of one is replayed alone."""
        where = _where(failed if failed is not None else records[0])
        if len(records) == 1 and failed is not None:
            self._poison = (where, f"{type(exc).__name__}: {exc}")
            self.log.error(
                "poison_record",
                topic=where[0],
                partition=where[1],
                offset=where[2],
                error=self._poison[1],
                dead_letter=self.topic,
            )
            return
        for msg in records:
            tp = (msg.topic() or "", msg.partition() or 0)
            self._careful_until[tp] = max(self._careful_until.get(tp, -1), msg.offset() or 0)
        self.log.warning(
            "handler_failed_isolating",
            topic=where[0],
            partition=where[1],
            offset=where[2],
            error=f"{type(exc).__name__}: {exc}",
            records=len(records),
        )

    def divert(self, msg: Message, txn: Transaction) -> bool:
        """Write `msg` to the dead-letter topic in `txn` if it is the poison record (its offset commits
        with it); False for any other record."""
        if self._poison is None or self._poison[0] != _where(msg):
            return False
        assert self.topic is not None  # isolate() marks a poison record only with a topic to divert it to
        (topic, partition, offset), error = self._poison
        headers: list[tuple[str, str | bytes | None]] = [
            ("error", error),
            ("topic", topic),
            ("partition", str(partition)),
            ("offset", str(offset)),
            ("processor", self.processor),
        ]
        try:
            txn.produce(self.topic, msg.key(), msg.value(), headers=headers)
        except KafkaException as exc:
            if not too_large(exc):
                raise
            # An input at its topic's limit has no room for the headers: its origin still tells where it is.
            size = len(msg.value() or b"")
            txn.produce(self.topic, msg.key(), None, headers=[*headers, ("value_dropped", f"{size} bytes")])
        self._poison = None
        self.count += 1
        return True

    def committed(self, records: list[Message]) -> None:
        """The records are committed: a partition replayed past its failed batch is read in batches again."""
        for msg in records:
            tp = (msg.topic() or "", msg.partition() or 0)
            if tp in self._careful_until and (msg.offset() or 0) >= self._careful_until[tp]:
                del self._careful_until[tp]

    def forget(self) -> None:
        """Partitions were revoked: a new owner finds a bad record again by itself."""
        self._careful_until.clear()
        self._poison = None
