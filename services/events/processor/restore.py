"""Where a partition becoming ours starts: its inputs' committed offsets, then its state from the changelog.

Order matters: with read_committed the offset fetch waits for a pending transactional offset commit
(a dead member's transaction) to resolve, after which no transaction that could still commit writes
to these changelog partitions.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from structlog.typing import FilteringBoundLogger

from mailstream.events.processor.clients import ProcessorFatalError, kafka_error

# A partition whose leader the client does not know yet: a broker just restarted, leadership is moving.
_NOT_YET = frozenset(
    {
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
    }
)


class Stopping(Exception):
    """Stop was requested while a restore waited for an open transaction to end."""


def starting_offsets(
    consumer: Consumer, watermarks: Consumer, tps: list[TopicPartition], wait_s: float
) -> dict[tuple[str, int], int]:
    """The committed offset of each input partition; where nothing is committed, its earliest record."""
    try:
        committed = consumer.committed(tps, timeout=wait_s) if tps else []
    except KafkaException as exc:
        raise ProcessorFatalError(f"committed offsets of {sorted({tp.partition for tp in tps})}: {exc}") from exc
    starts: dict[tuple[str, int], int] = {}
    for tp in committed:
        if tp.error is not None:
            raise ProcessorFatalError(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
        offset = tp.offset
        if offset < 0:  # nothing committed: from the earliest record still there
            offset = watermark_offsets(watermarks, TopicPartition(tp.topic, tp.partition), wait_s)[0]
        starts[(tp.topic, tp.partition)] = offset
    return starts


def watermark_offsets(watermarks: Consumer, tp: TopicPartition, wait_s: float) -> tuple[int, int]:
    """(low, high) of a partition, asked again while its leader is not known yet (the chaos run on a cluster
    saw a stage exit on _UNKNOWN_PARTITION when a restarted node moved leaderships during a rebalance);
    ProcessorFatalError after `wait_s` or on any other error."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            low, high = watermarks.get_watermark_offsets(tp, max(0.1, min(5.0, deadline - time.monotonic())))
            return int(low), int(high)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.code() not in _NOT_YET or time.monotonic() >= deadline:
                raise ProcessorFatalError(f"watermarks of {tp.topic}[{tp.partition}]: {exc}") from exc
            time.sleep(0.2)


def read_changelog(
    restorer: Consumer,
    watermarks: Consumer,
    changelog: str,
    owned: list[int],
    wait_s: float,
    stop: threading.Event,
    log: FilteringBoundLogger,
) -> dict[int, dict[bytes, bytes]]:
    """Latest value per key of each changelog partition, read_committed, up to its end.

    The end is the high watermark taken now (read_uncommitted, so it counts open transactions).
    read_committed fetching stops at the last stable offset, and the position moves past
    control records and aborted batches, so position >= end means everything before it is
    resolved and read. An open transaction holds the position back until it ends (raises Stopping
    if `stop` is set meanwhile, ProcessorFatalError after `wait_s`).
    """
    states: dict[int, dict[bytes, bytes]] = {p: {} for p in owned}
    ends: dict[int, int] = {}
    for p in owned:
        low, high = watermark_offsets(watermarks, TopicPartition(changelog, p), wait_s)
        if high > low:  # else empty (or compacted away)
            ends[p] = high
    pending = set(ends)
    if not pending:
        return states
    restorer.assign([TopicPartition(changelog, p, OFFSET_BEGINNING) for p in pending])
    deadline = time.monotonic() + wait_s
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
            positions = restorer.position([TopicPartition(changelog, p) for p in sorted(pending)])
            pending -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
            now = time.monotonic()
            if pending and stop.is_set():
                raise Stopping
            if pending and now > deadline:
                raise ProcessorFatalError(
                    f"changelog {changelog} partitions {sorted(pending)} not "
                    f"restorable within {wait_s:.0f}s (transaction left open?)"
                )
            if pending and now > next_report:
                next_report = now + 5.0
                log.info(
                    "restore_waiting",
                    ends={p: ends[p] for p in pending},
                    positions={tp.partition: tp.offset for tp in positions if tp.partition in pending},
                )
    finally:
        restorer.unassign()
    return states
