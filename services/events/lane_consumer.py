"""A consumer-group member for at-least-once work, in order per partition and several partitions at once.

The webhooks service runs one per endpoint. Unlike `kafka.EventConsumer`, the caller marks each record done
(`done`) whenever it finishes it, from any partition's lane, without waiting for the consumer's thread:
librdkafka stores the offset and commits what is stored every `commit_interval` and whenever partitions are
revoked or the member closes, so a crash re-sends at most the records finished in the last interval.

A partition the group has never committed starts at the first record written at or after `start` (the
endpoint's creation), not at auto.offset.reset's end or beginning, and that position is stored at once, so
the group is anchored even before its first record arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from mailstream.events.kafka import BATCHED_FETCH, Bootstrap, Consumed, client_config, consume_now, consumed

CALLBACK_TIMEOUT = 10.0  # seconds for the committed-offset and time look-ups a new assignment makes


class LaneConsumer:
    def __init__(
        self,
        bootstrap: Bootstrap,
        group_id: str,
        topic: str,
        start: datetime,
        *,
        commit_interval: float = 1.0,
        **extra: Any,
    ) -> None:
        self._topic = topic
        self._start_ms = int(start.timestamp() * 1000)
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": group_id,
                "enable.auto.commit": True,  # commits what `done` stored, never what was merely fetched
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": int(commit_interval * 1000),
                "auto.offset.reset": "latest",  # only if the start look-up failed: new events rather than a flood
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                "isolation.level": "read_committed",  # the scheduler writes mail.events in transactions
                **BATCHED_FETCH,
                # Idle, every endpoint's consumer asks each broker again when a fetch wait ends: 250 ms instead of
                # 20 makes a hundred idle endpoints 400 fetches a second, not 5,000; a webhook can wait that long.
                "fetch.wait.max.ms": 250,
                **extra,
            }
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lanes-{group_id}")
        self._lock = threading.Lock()
        self._revoked: list[int] = []
        self.start_errors: list[str] = []  # look-ups that failed at assignment (the partition then starts at its end)
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        anchors: list[TopicPartition] = []
        try:
            committed = consumer.committed(tps, timeout=CALLBACK_TIMEOUT)
            fresh = [TopicPartition(tp.topic, tp.partition, self._start_ms) for tp in committed if tp.offset < 0]
            for tp in consumer.offsets_for_times(fresh, timeout=CALLBACK_TIMEOUT) if fresh else []:
                if tp.offset < 0:  # nothing written since `start`: the partition's end
                    tp.offset = consumer.get_watermark_offsets(tp, timeout=CALLBACK_TIMEOUT)[1]
                anchors.append(tp)
        except KafkaException as exc:
            self.start_errors.append(str(exc))
        at = {(tp.topic, tp.partition): tp.offset for tp in anchors}
        consumer.incremental_assign(
            [TopicPartition(tp.topic, tp.partition, at.get((tp.topic, tp.partition), -1001)) for tp in tps]
        )
        if anchors:
            consumer.store_offsets(offsets=anchors)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        with self._lock:
            self._revoked.extend(tp.partition for tp in tps)
        consumer.resume(tps)  # a partition paused here must not come back paused when it is given back

    def revoked(self) -> list[int]:
        """Partitions taken away since the last call: their records are another member's now."""
        with self._lock:
            gone, self._revoked = self._revoked, []
        return gone

    async def poll_batch(self, max_records: int = 500, timeout: float = 0.5) -> list[Consumed]:
        loop = asyncio.get_running_loop()
        return consumed(await loop.run_in_executor(self._executor, consume_now, self._consumer, max_records, timeout))

    def done(self, record: Consumed) -> bool:
        """Mark `record` finished (the next commit includes it); False if its partition is no longer ours."""
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(record.topic, record.partition, record.offset + 1)])
        except KafkaException:
            return False
        return True

    def pause(self, partition: int, paused: bool) -> None:
        """Stop (or restart) fetching one partition; its lane has enough to do."""
        tp = [TopicPartition(self._topic, partition)]
        with contextlib.suppress(KafkaException):  # revoked meanwhile: nothing to fetch
            (self._consumer.pause if paused else self._consumer.resume)(tp)

    def high_watermark(self, partition: int) -> int | None:
        """The partition's end as last fetched (no request is made); None before a fetch."""
        high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, partition), cached=True)
        return high[1] if high is not None and high[1] >= 0 else None

    async def close(self) -> None:
        """Commit what is stored and leave the group."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._consumer.close)
        self._executor.shutdown(wait=False)
