"""The chaos run's witness: tails mail.status and mail.responses as committed, while the services die around it.

It keeps each transaction's latest status, and when each attempt's response was first seen committed (the
harness's monotonic clock), so a send repeated after a delivery kill can be told apart: an attempt whose
response was committed before the kill must never go out again.
"""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from mailstream.events.records import DeliveryResponse, TransactionStatus
from mailstream.events.serde import SerdeError
from mailstream.events.topics import PARTITIONS, RESPONSES, STATUS


class Witness:
    def __init__(self, bootstrap: str, partitions: int = PARTITIONS) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"chaos-witness-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 50,
                "log_level": 2,  # quiet: the broker being away (connection refused) is the point of the run
            }
        )
        topics = (STATUS.name, RESPONSES.name)
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(partitions)])
        self._lock = threading.Lock()
        self._statuses: dict[str, TransactionStatus] = {}
        self._answered: dict[str, float] = {}
        self.unreadable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-witness", daemon=True)

    def start(self) -> Witness:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.2):  # errors while the broker is away: it reconnects
                if msg.error() is not None or msg.value() is None:
                    continue
                self._fold(msg.topic() or "", msg.value() or b"", time.monotonic())

    def _fold(self, topic: str, value: bytes, now: float) -> None:
        try:
            if topic == STATUS.name:
                status = STATUS.decode(value)
                with self._lock:
                    known = self._statuses.get(status.id)
                    if known is None or known.version < status.version:
                        self._statuses[status.id] = status
            else:
                answer = RESPONSES.decode(value)
                if isinstance(answer, DeliveryResponse):
                    with self._lock:
                        self._answered.setdefault(answer.attempt_id, now)
        except SerdeError:
            self.unreadable += 1

    def statuses(self) -> dict[str, TransactionStatus]:
        with self._lock:
            return dict(self._statuses)

    def answered(self) -> dict[str, float]:
        """attempt id -> when its response was first seen committed."""
        with self._lock:
            return dict(self._answered)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()
