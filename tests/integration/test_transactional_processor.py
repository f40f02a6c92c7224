"""The transactional processor against a real broker: exact caps across SIGKILL, ticks, restore, dead letters."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from mailstream.events import fixtures
from mailstream.events.kafka import ensure_topics
from mailstream.events.processor import TransactionalProcessor, Writes
from mailstream.events.records import DeliveryTask
from mailstream.events.serde import decode, encode
from mailstream.events.topics import TopicSpec
from tests.infra import topics
from tests.infra.logs import log_events
from tests.infra.topics import committed_offsets, end_offsets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


# -- helpers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    inp: str
    out: str
    changelog: str
    partitions: int


def make_topics(bootstrap: str, partitions: int) -> Topics:
    tag = uuid.uuid4().hex[:10]
    t = Topics(f"test.eos.{tag}.in", f"test.eos.{tag}.out", f"test.eos.{tag}.changelog", partitions)
    ensure_topics(
        bootstrap,
        [
            TopicSpec(t.inp, "scope", (DeliveryTask,), partitions=partitions),
            TopicSpec(t.out, "scope", (DeliveryTask,), partitions=partitions),
            TopicSpec(
                t.changelog,
                "state key",
                (DeliveryTask,),
                partitions=partitions,
                cleanup_policy="compact",
                retention_ms=-1,
            ),
        ],
    )
    return t


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes]]) -> None:
    """(partition, key, value) records, acknowledged before returning."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for partition, key, value in records:
        producer.produce(topic, value=value, key=key, partition=partition)
    assert producer.flush(30) == 0


def read_all(
    bootstrap: str, topic: str, partitions: int, *, isolation: str = "read_committed"
) -> list[tuple[int, bytes, bytes | None]]:
    """(partition, key, value) of every record up to the current high watermark."""
    return [(p, k, v) for p, _, k, v in topics.read_all(bootstrap, topic, partitions, isolation=isolation)]


def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def dead_lettered(bootstrap: str, topic: str) -> list[Message]:
    """The records set aside in a (one-partition) dead-letter topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dl-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    records = [m for m in consumer.consume(10, 5.0) if m.error() is None]
    consumer.close()
    return records


def wall_clock() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@contextmanager
def running(processor: TransactionalProcessor) -> Iterator[threading.Thread]:
    """Run the processor on a thread; stop it on exit and surface what it raised."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            processor.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="processor", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "processor did not stop"
    if errors:
        raise errors[0]


def processor(
    bootstrap: str, group: str, t: Topics, handler: Any, clock: Callable[[], datetime], **kw: Any
) -> TransactionalProcessor:
    return TransactionalProcessor(
        bootstrap=bootstrap,
        group_id=group,
        inputs=[t.inp],
        changelog=t.changelog,
        partitions=t.partitions,
        handler=handler,
        clock=clock,
        **kw,
    )


# -- 1. exact caps across SIGKILL + rebalance -----------------------------------------------------------

CAP = 150
PER_SCOPE = 250
SCOPES = [f"scope-{i}".encode() for i in range(8)]  # two per partition


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self, event: str) -> list[dict[str, Any]]:
        return log_events(self.log, event=event)

    def owned(self) -> list[int]:
        assigned = self.events("partitions_assigned")
        return list(assigned[-1]["partitions"]) if assigned else []


def start_worker(name: str, bootstrap: str, group: str, t: Topics, workdir: Path, *extra: str) -> Worker:
    log = workdir / f"{name}.log"
    cmd = [
        sys.executable,
        "-m",
        "tests.infra.capped_counter",
        "--bootstrap",
        bootstrap,
        "--group",
        group,
        "--in",
        t.inp,
        "--out",
        t.out,
        "--changelog",
        t.changelog,
        "--partitions",
        str(t.partitions),
        "--cap",
        str(CAP),
        "--name",
        name,
        "--transaction-timeout-ms",
        "5000",
        *extra,
    ]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    return Worker(name, proc, log)


@dataclass
class OutputTail:
    """Follows the output topic as a read_committed consumer would, noting when each record showed up."""

    bootstrap: str
    topic: str
    seen: list[tuple[float, bytes, bytes]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> OutputTail:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"tail-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        consumer.subscribe([self.topic])
        try:
            while not self._stop.is_set():
                for m in consumer.consume(500, 0.05):
                    if m.error() is None:
                        self.seen.append((time.monotonic(), m.key() or b"", m.value() or b""))
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def test_caps_are_exact_and_nothing_is_emitted_twice_across_sigkill(kafka_bootstrap: str, tmp_path: Path) -> None:
    t = make_topics(kafka_bootstrap, 4)
    group = f"capped-{uuid.uuid4().hex[:8]}"
    inputs = [
        (i % 4, scope, f"{scope.decode()}/item-{n}".encode())
        for n in range(PER_SCOPE)
        for i, scope in enumerate(SCOPES)
    ]
    total_out = CAP * len(SCOPES)
    tail = OutputTail(kafka_bootstrap, t.out).start()
    # worker-a hangs inside a transaction whose records are already in the log: the worst moment to die.
    # Its transaction timeout outlasts the session timeout, so the new owner's restore has to wait for the
    # coordinator to abort that transaction.
    workers = {
        "worker-a": start_worker(
            "worker-a", kafka_bootstrap, group, t, tmp_path, "--stall-after", "100", "--transaction-timeout-ms", "10000"
        ),
        "worker-b": start_worker("worker-b", kafka_bootstrap, group, t, tmp_path),
    }
    try:
        wait_for(
            lambda: (
                all(w.owned() for w in workers.values())
                and sorted(p for w in workers.values() for p in w.owned()) == [0, 1, 2, 3]
            ),
            45,
            "both workers to own two partitions each",
            interval=0.2,
        )

        # Inputs arrive over ~4 s, as traffic would; the kill lands while they flow.
        def feed() -> None:
            producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
            for i in range(0, len(inputs), 40):
                for partition, key, value in inputs[i : i + 40]:
                    producer.produce(t.inp, value=value, key=key, partition=partition)
                producer.flush(10)
                time.sleep(0.08)
            assert producer.flush(30) == 0

        started = time.monotonic()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        victim = workers["worker-a"]
        wait_for(lambda: bool(victim.events("stalled_in_transaction")), 30, "worker-a to stall", interval=0.1)
        time.sleep(0.3)
        lost = victim.owned()
        outputs_at_kill = len(tail.seen)
        victim.proc.kill()
        victim.proc.wait()
        killed_at, killed_wall = time.monotonic(), time.time()
        workers["worker-c"] = start_worker("worker-c", kafka_bootstrap, group, t, tmp_path)  # the supervisor's restart

        feeder.join(30)
        in_ends = end_offsets(kafka_bootstrap, t.inp, 4)
        assert sum(in_ends) == len(inputs)
        wait_for(
            lambda: committed_offsets(kafka_bootstrap, group, t.inp, 4) == in_ends,
            50,
            "every input to be committed",
            interval=0.25,
        )
        done_at = time.monotonic()
    finally:
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.terminate()
        for w in workers.values():
            try:
                w.proc.wait(20)
            except subprocess.TimeoutExpired:
                w.proc.kill()
        tail.stop()

    assert [w.proc.returncode for n, w in workers.items() if n != "worker-a"] == [0, 0], "SIGTERM stops cleanly"
    out = read_all(kafka_bootstrap, t.out, 4)
    raw = read_all(kafka_bootstrap, t.out, 4, isolation="read_uncommitted")
    items = [value for _, _, value in out]
    per_scope = Counter(key for _, key, _ in out)
    assert 0 < outputs_at_kill < total_out, "the kill must land mid-run"
    assert len(raw) > len(out), "the killed transaction had records in the log, and they stay invisible"
    assert {scope: per_scope[scope] for scope in SCOPES} == {scope: CAP for scope in SCOPES}
    assert len(items) == len(set(items)) == total_out, "an item was emitted twice"
    assert set(items) <= {value for _, _, value in inputs}
    assert all(value is not None and value.startswith(key + b"/") for _, key, value in out)
    state = {key: value for _, key, value in read_all(kafka_bootstrap, t.changelog, 4)}
    assert state == {scope: str(CAP).encode() for scope in SCOPES}

    # Figures: when the partitions of the killed worker got a new owner, and when its scopes' output resumed.
    lost_scopes = {scope for i, scope in enumerate(SCOPES) if i % 4 in lost}
    resumed = [at for at, key, _ in tail.seen if at > killed_at and key in lost_scopes]
    survivors = [w for n, w in workers.items() if n != "worker-a"]
    took = [
        (datetime.fromisoformat(e["timestamp"]).timestamp() - killed_wall, e["restore_ms"])
        for w in survivors
        for e in w.events("partitions_assigned")
        if set(lost) & set(e["partitions"])
    ]
    took = [(round(after, 1), ms) for after, ms in took if after > 0]
    print(
        f"\nkilled worker-a (partitions {lost}) mid-transaction after {outputs_at_kill}/{total_out} outputs, "
        f"{killed_at - started:.1f}s into the feed, {len(raw) - len(out)} of its records aborted; "
        f"its partitions owned again after (s, restore ms) {took}; "
        f"its scopes' output visible again {(resumed or [float('nan')])[0] - killed_at:.1f}s after the kill; "
        f"all inputs committed {done_at - killed_at:.1f}s after the kill"
    )


# -- 2. ticks, and state restored from the changelog -------------------------------------------------


class TickCounter:
    """Counts ticks and records per partition; each tick emits "partition:count"."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic
        self.ticks: dict[int, int] = {}
        self.records: dict[int, int] = {}
        self.restored: dict[int, dict[bytes, bytes]] = {}

    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None:
        self.restored[partition] = dict(state)
        self.ticks[partition] = int(state.get(b"ticks", b"0"))
        self.records[partition] = int(state.get(b"records", b"0"))

    def revoked(self, partition: int) -> None:
        self.ticks.pop(partition, None)
        self.records.pop(partition, None)

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        self.records[partition] += 1
        out.put(partition, b"records", str(self.records[partition]).encode())

    def on_tick(self, now: datetime, out: Writes) -> None:
        for p in sorted(self.ticks):
            self.ticks[p] += 1
            out.put(p, b"ticks", str(self.ticks[p]).encode())
            out.send(self.out_topic, b"tick", f"{p}:{self.ticks[p]}".encode(), partition=p)


def test_ticks_follow_the_clock_and_state_survives_a_restart(kafka_bootstrap: str) -> None:
    t = make_topics(kafka_bootstrap, 2)
    group = f"ticks-{uuid.uuid4().hex[:8]}"
    clock = ManualClock()
    produce(kafka_bootstrap, t.inp, [(i % 2, b"k", b"v") for i in range(10)])

    def ticks() -> list[str]:
        return sorted(v.decode() for _, _, v in read_all(kafka_bootstrap, t.out, 2) if v is not None)

    first = TickCounter(t.out)
    p1 = processor(kafka_bootstrap, group, t, first, clock, tick_interval=60.0)
    with running(p1):
        wait_for(lambda: p1.records_processed == 10, 30, "the first 10 records")
        assert p1.assigned == {0, 1}
        time.sleep(0.3)
        assert ticks() == [], "no tick before the clock moves"
        clock.advance(30)
        time.sleep(0.3)
        assert ticks() == [], "no tick before tick_interval has passed on the clock"
        clock.advance(30)
        wait_for(lambda: ticks() == ["0:1", "1:1"], 10, "the first tick")
        clock.advance(60)
        wait_for(lambda: ticks() == ["0:1", "0:2", "1:1", "1:2"], 10, "the second tick")
    assert p1.transactions_aborted == 0
    assert (first.records, first.ticks) == ({}, {}), "stopping revokes every partition"

    second = TickCounter(t.out)
    p2 = processor(kafka_bootstrap, group, t, second, clock, tick_interval=60.0)
    with running(p2):
        wait_for(lambda: p2.assigned == {0, 1} and p2.healthy, 30, "the restarted processor to own both partitions")
        assert second.restored == {p: {b"ticks": b"2", b"records": b"5"} for p in (0, 1)}
        clock.advance(60)
        wait_for(lambda: ticks() == ["0:1", "0:2", "0:3", "1:1", "1:2", "1:3"], 10, "a tick after the restart")
        produce(kafka_bootstrap, t.inp, [(0, b"k", b"v"), (1, b"k", b"v")])
        wait_for(lambda: p2.records_processed == 2, 10, "the two new records")
        assert second.records == {0: 6, 1: 6}, "counts continue from the changelog, records are not replayed"


# -- 3. a failing handler leaves nothing behind ----------------------------------------------------------


class Echo:
    """Sends every record on and counts them per partition.

    With ``fail_on`` it raises mid-batch after its output left for the broker; with ``oversize_on`` it
    also sends, once, a record larger than the processor's max_message_bytes (and the topic's).
    """

    def __init__(self, out_topic: str, fail_on: bytes | None = None, oversize_on: bytes | None = None) -> None:
        self.out_topic = out_topic
        self.fail_on = fail_on
        self.oversize_on = oversize_on
        self.counts: dict[int, int] = {}
        self.restores: list[tuple[int, dict[bytes, bytes]]] = []

    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None:
        self.restores.append((partition, dict(state)))
        self.counts[partition] = int(state.get(b"n", b"0"))

    def revoked(self, partition: int) -> None:
        self.counts.pop(partition, None)

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        if value == self.fail_on:
            time.sleep(0.3)  # the batch's records reach the broker: the abort must undo them
            raise RuntimeError("handler failed")
        if value == self.oversize_on:
            self.oversize_on = None
            out.send(self.out_topic, b"big", os.urandom(2 * 1024 * 1024))  # refused by produce()
        self.counts[partition] += 1
        out.send(self.out_topic, key or b"", value, partition=partition)
        out.put(partition, b"n", str(self.counts[partition]).encode())

    def on_tick(self, now: datetime, out: Writes) -> None:
        pass


def test_a_handler_failure_aborts_the_whole_batch(kafka_bootstrap: str) -> None:
    t = make_topics(kafka_bootstrap, 2)
    group = f"abort-{uuid.uuid4().hex[:8]}"
    values = [f"r{i}".encode() for i in range(100)] + [b"boom"]
    produce(kafka_bootstrap, t.inp, [(0, b"k", v) for v in values])

    failing = processor(kafka_bootstrap, group, t, Echo(t.out, fail_on=b"boom"), wall_clock)
    with pytest.raises(RuntimeError, match="handler failed"), running(failing):
        wait_for(lambda: failing.transactions_aborted == 1, 30, "the failed batch")
    assert failing.transactions_committed == 0
    assert read_all(kafka_bootstrap, t.out, 2) == [], "read_committed sees nothing of the failed batch"
    assert read_all(kafka_bootstrap, t.out, 2, isolation="read_uncommitted"), "its records did reach the log"
    assert committed_offsets(kafka_bootstrap, group, t.inp, 2) == [-1001, -1001]

    healthy = processor(kafka_bootstrap, group, t, Echo(t.out), wall_clock)
    with running(healthy):
        wait_for(lambda: healthy.records_processed == len(values), 30, "the replayed batch")
    assert [v for _, _, v in read_all(kafka_bootstrap, t.out, 2)] == values
    assert read_all(kafka_bootstrap, t.changelog, 2)[-1] == (0, b"n", b"101")


def test_a_record_the_handler_fails_on_goes_to_the_dead_letter_topic(kafka_bootstrap: str) -> None:
    t = make_topics(kafka_bootstrap, 2)
    dead = t.inp.replace(".in", ".dead")
    ensure_topics(kafka_bootstrap, [TopicSpec(dead, "the record's key", (), partitions=1)])
    group = f"poison-{uuid.uuid4().hex[:8]}"
    values = [f"r{i}".encode() for i in range(100)]
    produce(kafka_bootstrap, t.inp, [(0, b"k", v) for v in values] + [(1, b"k", b"other")])

    echo = Echo(t.out, fail_on=b"r37")
    proc = processor(kafka_bootstrap, group, t, echo, wall_clock, dead_letter=dead)
    with running(proc):
        wait_for(lambda: proc.records_processed == 101, 60, "every record, the poison one diverted")
        assert proc.healthy
    good = [v for v in values if v != b"r37"]
    assert sorted(v for _, _, v in read_all(kafka_bootstrap, t.out, 2) if v is not None) == sorted([*good, b"other"])
    assert {p: v for p, _, v in read_all(kafka_bootstrap, t.changelog, 2)} == {0: b"99", 1: b"1"}
    diverted = dead_lettered(kafka_bootstrap, dead)
    assert [m.value() for m in diverted] == [b"r37"]
    headers = dict(diverted[0].headers() or [])
    assert headers["error"] == b"RuntimeError: handler failed"
    assert (headers["topic"], headers["partition"], headers["offset"]) == (t.inp.encode(), b"0", b"37")


class Reading(Echo):
    """An Echo of the records it can read as delivery tasks, as a stage reads its inputs: it raises on any other."""

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        decode(value, DeliveryTask)
        super().on_record(partition, topic, key, value, now, out)


def test_a_record_the_handler_cannot_read_goes_to_the_dead_letter_topic(kafka_bootstrap: str) -> None:
    t = make_topics(kafka_bootstrap, 2)
    dead = t.inp.replace(".in", ".dead")
    ensure_topics(kafka_bootstrap, [TopicSpec(dead, "the record's key", (), partitions=1)])
    tasks = [encode(fixtures.task().model_copy(update={"id": f"tx-{i}"})) for i in range(20)]
    garbage = b"\xc3\x01 not a record"
    produce(kafka_bootstrap, t.inp, [(0, b"k", v) for v in [*tasks[:10], garbage, *tasks[10:]]])

    proc = processor(
        kafka_bootstrap,
        f"unreadable-{uuid.uuid4().hex[:8]}",
        t,
        Reading(t.out),
        wall_clock,
        dead_letter=dead,
        name="reader",
    )
    with running(proc):
        wait_for(lambda: proc.records_processed == 21, 60, "every record, the unreadable one diverted")
        assert proc.healthy
    assert proc.records_dead_lettered == 1
    assert sorted(v for _, _, v in read_all(kafka_bootstrap, t.out, 2) if v is not None) == sorted(tasks)
    diverted = dead_lettered(kafka_bootstrap, dead)
    assert [m.value() for m in diverted] == [garbage]
    headers = dict(diverted[0].headers() or [])
    assert headers["error"] == b"SerdeError: unknown schema fingerprint 206e6f7420612072 for mailstream.DeliveryTask"
    assert (headers["topic"], headers["partition"], headers["offset"], headers["processor"]) == (
        t.inp.encode(),
        b"0",
        b"10",
        b"reader",
    )


class Bloating(Echo):
    """An Echo that, for every record named in `big`, also sends `size` random bytes: too large each time."""

    def __init__(self, out_topic: str, big: set[bytes], size: int) -> None:
        super().__init__(out_topic)
        self.big, self.size = big, size

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        super().on_record(partition, topic, key, value, now, out)  # its state change comes first: it must not stay
        if value in self.big:
            out.send(self.out_topic, b"big", os.urandom(self.size), partition=partition)


@pytest.mark.parametrize("refused_by", ["produce", "broker"])
def test_an_input_whose_output_is_too_large_goes_to_the_dead_letter_topic(
    kafka_bootstrap: str, refused_by: str
) -> None:
    """Refused by produce() (over the processor's max_message_bytes) or only by the broker (a topic with a lower
    max.message.bytes, so the commit fails): either way the input is set aside once, its state change undone,
    and the partition goes on, instead of aborting and restoring forever."""
    t = make_topics(kafka_bootstrap, 2)
    dead = t.inp.replace(".in", ".dead")
    ensure_topics(kafka_bootstrap, [TopicSpec(dead, "the record's key", (), partitions=1)])
    if refused_by == "broker":
        t = Topics(t.inp, t.out.replace(".out", ".small"), t.changelog, t.partitions)
        ensure_topics(kafka_bootstrap, [TopicSpec(t.out, "scope", (), partitions=2, max_message_bytes=16 * 1024)])
    size = 2 * 1024 * 1024 if refused_by == "produce" else 64 * 1024  # random bytes: lz4 cannot shrink them
    values = {p: [f"p{p}-r{i}".encode() for i in range(60)] for p in (0, 1)}
    produce(kafka_bootstrap, t.inp, [(p, b"k", v) for p in (0, 1) for v in values[p]])

    handler = Bloating(t.out, {b"p0-r7", b"p0-r40"}, size)
    proc = processor(kafka_bootstrap, f"big-{uuid.uuid4().hex[:8]}", t, handler, wall_clock, dead_letter=dead)
    with running(proc):
        wait_for(lambda: proc.records_processed == 120, 60, "every record, the two bloating ones diverted")
        assert proc.healthy
        aborted = proc.transactions_aborted
        time.sleep(1.0)
        assert proc.transactions_aborted == aborted, "no abort-and-restore loop"
    assert proc.records_dead_lettered == 2
    # Each culprit costs its batch's abort and then its own (the broker's refusal one more: the sequence gap).
    assert aborted <= (4 if refused_by == "produce" else 8)
    diverted = dead_lettered(kafka_bootstrap, dead)
    assert [m.value() for m in diverted] == [b"p0-r7", b"p0-r40"]
    headers = dict(diverted[0].headers() or [])
    assert "Message size too large" in str(headers["error"])
    assert (headers["topic"], headers["partition"], headers["offset"]) == (t.inp.encode(), b"0", b"7")
    out = [v for _, k, v in read_all(kafka_bootstrap, t.out, 2) if k != b"big"]
    assert sorted(v for v in out if v is not None) == sorted(
        [v for v in values[0] if v not in handler.big] + values[1]
    ), "each record but the diverted ones once"
    # Their counts were undone with the abort: partition 0 counted 58 records, not 60.
    assert {p: v for p, _, v in read_all(kafka_bootstrap, t.changelog, 2)} == {0: b"58", 1: b"60"}


def test_an_abortable_error_rewinds_state_and_input(kafka_bootstrap: str) -> None:
    t = make_topics(kafka_bootstrap, 2)
    group = f"rewind-{uuid.uuid4().hex[:8]}"
    values = {p: [f"p{p}-r{i}".encode() for i in range(50)] for p in (0, 1)}
    produce(kafka_bootstrap, t.inp, [(p, b"k", v) for p in (0, 1) for v in values[p]])

    echo = Echo(t.out, oversize_on=b"p0-r20")
    proc = processor(kafka_bootstrap, group, t, echo, wall_clock)
    with running(proc):
        wait_for(lambda: proc.records_processed == 100, 30, "every record after the abort")
        assert proc.healthy
    # Refused before it took a sequence number: one abort, and the next transaction is clean.
    assert proc.transactions_aborted == 1
    assert echo.counts == {}
    # Restored at the start, and again from the changelog after the abort: with what was committed before it.
    # How the first fetches split the partitions into batches depends on the broker, so partition 1 may have been
    # committed whole before the batch holding p0-r20 aborted; nothing from that batch on may show in partition 0.
    assert echo.restores[:2] == [(0, {}), (1, {})]
    after = dict(echo.restores[2:])
    assert set(after) == {0, 1}
    assert int(after[0].get(b"n", b"0")) <= 20, "nothing of the aborted batch was committed"
    out = read_all(kafka_bootstrap, t.out, 2)
    assert sorted(v for _, _, v in out if v is not None) == sorted(values[0] + values[1])
    assert {p: v for p, _, v in read_all(kafka_bootstrap, t.changelog, 2)} == {0: b"50", 1: b"50"}


def test_restore_waits_for_an_open_changelog_transaction(kafka_bootstrap: str) -> None:
    """A transaction left open on the changelog (a dead owner's) holds the restore until it ends."""
    t = make_topics(kafka_bootstrap, 2)
    group = f"restore-{uuid.uuid4().hex[:8]}"
    zombie = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"zombie-{group}"})
    zombie.init_transactions(10)
    zombie.begin_transaction()
    zombie.produce(t.changelog, key=b"n", value=b"7", partition=0)
    assert zombie.flush(10) == 0

    echo = Echo(t.out)
    proc = processor(kafka_bootstrap, group, t, echo, wall_clock)
    with running(proc):
        time.sleep(2.0)
        assert (proc.assigned, echo.restores) == (frozenset(), []), "restore must not end inside a transaction"
        zombie.commit_transaction(10)
        wait_for(lambda: proc.assigned == {0, 1}, 10, "the restore to finish")
    assert sorted(echo.restores) == [(0, {b"n": b"7"}), (1, {})]

    zombie.begin_transaction()
    zombie.produce(t.changelog, key=b"n", value=b"8", partition=0)
    assert zombie.flush(10) == 0
    stuck = processor(kafka_bootstrap, group, t, Echo(t.out), wall_clock)
    with running(stuck) as thread:
        time.sleep(1.5)
        assert stuck.assigned == frozenset()
        stopped = time.monotonic()
    assert not thread.is_alive()
    assert time.monotonic() - stopped < 5, "stop must not wait for the open transaction"
    zombie.abort_transaction(10)


# -- 4. throughput: one transaction per batch ---------------------------------------------------------------


def test_one_transaction_per_batch_throughput(kafka_bootstrap: str) -> None:
    t = make_topics(kafka_bootstrap, 4)
    group = f"rate-{uuid.uuid4().hex[:8]}"
    n = 20_000
    produce(kafka_bootstrap, t.inp, [(i % 4, f"key-{i % 200}".encode(), f"v{i}".encode()) for i in range(n)])
    echo = Echo(t.out)
    proc = processor(kafka_bootstrap, group, t, echo, wall_clock)
    with running(proc):
        wait_for(lambda: proc.records_processed > 0, 30, "the first batch")
        started = time.monotonic()
        first = proc.records_processed
        wait_for(lambda: proc.records_processed == n, 60, "every record")
        elapsed = time.monotonic() - started
    rate = (n - first) / elapsed
    print(
        f"\n{n} records in {proc.transactions_committed} transactions; {rate:,.0f} records/s "
        "(each record: one output + one changelog write)"
    )
    assert proc.transactions_committed <= n // 100, "transactions must span batches, not records"
    assert len(read_all(kafka_bootstrap, t.out, 4)) == n
