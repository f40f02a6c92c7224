"""The one seam to Kafka: confluent-kafka is imported here and nowhere else in the services.

Producers are idempotent (acks=all) and place keys with murmur2 like the Java client
(`mailstream.core.partitioner` computes the same placement); consumers never auto-commit, so an
offset is committed only after the effects of its record are durable. Every client's properties start from
`client_config`, which adds a `Cluster`'s TLS and SASL settings (`kafka.security_protocol` and the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from mailstream.config.kafka import KafkaConfig
from mailstream.events.records import Record
from mailstream.events.topics import TopicSpec

R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class Cluster:
    """Where the cluster is and how a client authenticates to it: what every client of the services is built
    from (`client_config`), so none connects without the configured TLS and SASL."""

    bootstrap: str
    # librdkafka properties (KafkaConfig.client_settings): passwords among them, so never in a repr
    security: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, config: KafkaConfig) -> Cluster:
        """The configured cluster; reads a SASL password file, so build it once at start-up."""
        return cls(config.bootstrap_servers, tuple(sorted(config.client_settings().items())))


# A bare "host:port[,...]" is a plaintext cluster (tests and tools); the services pass a Cluster.
Bootstrap = str | Cluster


def client_config(where: Bootstrap, **extra: Any) -> dict[str, Any]:
    """Any client's properties: the bootstrap servers, the cluster's security settings, then `extra`."""
    cluster = where if isinstance(where, Cluster) else Cluster(where)
    return {"bootstrap.servers": cluster.bootstrap, **dict(cluster.security), **extra}


class KafkaUnavailable(RuntimeError):
    """The cluster could not be reached or refused an operation."""


@dataclass(frozen=True, slots=True)
class Delivered:
    topic: str
    partition: int
    offset: int


def producer_config(bootstrap: Bootstrap, **extra: Any) -> dict[str, Any]:
    return client_config(
        bootstrap,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 5,  # fewer, fuller produce requests: the broker's cost is per request more than per record
            "compression.type": "lz4",
            "message.max.bytes": 64 * 1024 * 1024 + 4096,
            **extra,
        },
    )


class EventProducer:
    """Async facade over the librdkafka producer; a daemon thread serves delivery reports."""

    def __init__(self, bootstrap: Bootstrap, **extra: Any) -> None:
        self._producer = Producer(producer_config(bootstrap, **extra))
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: TopicSpec[R], key: str, record: R, partition: int | None = None) -> Delivered:
        """`partition` overrides the key's placement (a command every partition of a stage must see)."""
        return await self.send_raw(topic.name, key.encode(), topic.encode(record), partition)

    async def send_raw(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Delivered:
        loop = asyncio.get_running_loop()
        placed: dict[str, Any] = {} if partition is None else {"partition": partition}
        future: asyncio.Future[Delivered] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                result: Delivered | KafkaUnavailable = KafkaUnavailable(str(err))
            else:
                result = Delivered(msg.topic() or topic, msg.partition() or 0, msg.offset() or 0)
            loop.call_soon_threadsafe(_settle, future, result)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **placed)
        except BufferError:
            await asyncio.to_thread(self._producer.flush, 1.0)
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **placed)
        except KafkaException as exc:
            raise KafkaUnavailable(str(exc)) from exc
        return await future

    async def flush(self, timeout: float = 30.0) -> None:
        remaining = await asyncio.to_thread(self._producer.flush, timeout)
        if remaining:
            raise KafkaUnavailable(f"{remaining} records not acknowledged within {timeout}s")

    async def close(self) -> None:
        await self.flush()
        self._closing.set()
        await asyncio.to_thread(self._poller.join)


def _settle(future: asyncio.Future[Delivered], result: Delivered | KafkaUnavailable) -> None:
    if future.done():
        return
    if isinstance(result, KafkaUnavailable):
        future.set_exception(result)
    else:
        future.set_result(result)


@dataclass(frozen=True, slots=True)
class Consumed:
    """One record a consumer-group member read: what services need of it, without the client's types."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def consumed(msgs: list[Message]) -> list[Consumed]:
    """The records of a consume() call; a fatal error raises KafkaUnavailable, others (end of partition) pass."""
    good: list[Consumed] = []
    for msg in msgs:
        err = msg.error()
        if err is None:
            good.append(
                Consumed(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value() or b"")
            )
        elif err.code() != KafkaError._PARTITION_EOF and err.fatal():
            raise KafkaUnavailable(str(err))
    return good


# A fetch returns as soon as it has one byte by default, so every small write answers every waiting consumer
# and each consumer asks again at once: thousands of fetches a second that cost the broker more than the
# records. Waiting up to 20 ms for more data bounds each consumer to ~50 fetches a second under load.
BATCHED_FETCH: dict[str, Any] = {"fetch.min.bytes": 1024 * 1024, "fetch.wait.max.ms": 20}


def consume_now(consumer: Consumer, max_records: int, timeout: float) -> list[Message]:
    """Up to `max_records` records, returned as soon as there is one (waiting at most `timeout`).

    librdkafka's consume(n, timeout) waits for n records or the whole timeout, which would add
    the timeout to every hop of a lightly loaded pipeline; this takes what is already fetched,
    else waits for the first record and then takes what arrived with it.
    """
    msgs: list[Message] = consumer.consume(max_records, 0)
    if msgs or timeout <= 0:
        return msgs
    msgs = consumer.consume(1, timeout)
    if msgs and max_records > 1:
        msgs.extend(consumer.consume(max_records - 1, 0))
    return msgs


class EventConsumer:
    """A consumer-group member whose blocking calls run on one private thread.

    Partitions taken away by a rebalance are reported by `revoked()`, so a caller that tracks
    work per partition stops committing offsets it no longer owns; those given to it by `assigned()`,
    before any of their records is returned, so it can read what was committed for them first.
    """

    def __init__(self, bootstrap: Bootstrap, group_id: str, topics: Sequence[str], **extra: Any) -> None:
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                # A member that dies without leaving holds its partitions this long.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                "fetch.message.max.bytes": 64 * 1024 * 1024 + 4096,
                **BATCHED_FETCH,
                **extra,
            }
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"consumer-{group_id}")
        self._revoked: list[tuple[str, int]] = []  # appended on the consumer thread, drained by revoked()
        self._assigned: list[tuple[str, int]] = []  # likewise, drained by assigned()
        self._revoked_lock = threading.Lock()
        self._paused = False
        self._consumer.subscribe(
            list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        with self._revoked_lock:
            self._assigned.extend((tp.topic, tp.partition) for tp in tps)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        with self._revoked_lock:
            self._revoked.extend((tp.topic, tp.partition) for tp in tps)
        if self._paused and tps:
            consumer.resume(tps)  # a partition given back later must not come back paused

    def revoked(self) -> list[tuple[str, int]]:
        """Partitions taken away since the last call."""
        with self._revoked_lock:
            gone, self._revoked = self._revoked, []
        return gone

    def assigned(self) -> list[tuple[str, int]]:
        """Partitions given to this member since the last call."""
        with self._revoked_lock:
            given, self._assigned = self._assigned, []
        return given

    async def committed(
        self, tps: Sequence[tuple[str, int]], timeout: float = 10.0
    ) -> dict[tuple[str, int], tuple[int, str]]:
        """The group's committed next offset (-1: none) and its metadata, per partition; read_committed, so
        an offset still in an open transaction is waited for."""
        wanted = [TopicPartition(t, p) for t, p in tps]
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self._executor, lambda: self._consumer.committed(wanted, timeout))
        except KafkaException as exc:
            raise KafkaUnavailable(str(exc)) from exc
        for tp in found:
            if tp.error is not None:
                raise KafkaUnavailable(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else -1, tp.metadata or "") for tp in found}

    def owned(self) -> set[tuple[str, int]]:
        """The partitions assigned to this member now."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def group_metadata(self) -> object:
        """The member's group metadata, which a transaction's offsets carry (KIP-447 fencing)."""
        return self._consumer.consumer_group_metadata()

    async def poll_batch(self, max_records: int = 500, timeout: float = 0.5) -> list[Consumed]:
        loop = asyncio.get_running_loop()
        return consumed(await loop.run_in_executor(self._executor, consume_now, self._consumer, max_records, timeout))

    async def pause(self, paused: bool) -> None:
        """Stop (or restart) fetching every assigned partition; polling goes on, so the member stays."""
        if paused == self._paused:
            return
        self._paused = paused

        def flip() -> None:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if paused else self._consumer.resume)(assignment)

        await asyncio.get_running_loop().run_in_executor(self._executor, flip)

    async def commit(self, records: Iterable[Consumed]) -> None:
        """Commit the offset after the highest of `records` in each partition."""
        highest: dict[tuple[str, int], int] = {}
        for record in records:
            tp = (record.topic, record.partition)
            highest[tp] = max(highest.get(tp, -1), record.offset)
        await self.commit_offsets({tp: offset + 1 for tp, offset in highest.items()})

    async def commit_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the given next offsets ((topic, partition) -> offset of the next record to read)."""
        if not offsets:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, lambda: self._consumer.commit(offsets=tps, asynchronous=False))
        except KafkaException as exc:
            raise KafkaUnavailable(str(exc)) from exc

    async def close(self, timeout: float | None = None) -> None:
        """Leave the group; with `timeout`, give up waiting after that many seconds (the cluster is gone)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop.run_in_executor(self._executor, self._consumer.close), timeout)
        self._executor.shutdown(wait=False)


class OffsetReader:
    """Random access by (partition, offset) into one topic, many records per pass (message bodies).

    A pass assigns each wanted partition at its lowest wanted offset, reads forward to its highest,
    then unassigns: nothing is fetched between passes. Records in between are read too, which is
    what a delivery worker wants anyway (bodies are written in the order their tasks arrive).
    """

    def __init__(self, bootstrap: Bootstrap, topic: str, **extra: Any) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": f"mailstream-reader-{topic}",
                "enable.auto.commit": False,
                "fetch.message.max.bytes": 64 * 1024 * 1024 + 4096,
                # A pass wants its records now: don't let the broker hold a fetch for more data.
                "fetch.wait.max.ms": 10,
                **extra,
            }
        )
        self._lock = threading.Lock()

    def read_many(self, wanted: dict[int, set[int]], timeout: float = 10.0) -> dict[tuple[int, int], bytes]:
        """The values found at the wanted offsets; an offset that is gone (or not yet written) is left out."""
        todo = {p: sorted(offsets, reverse=True) for p, offsets in wanted.items() if offsets}
        found: dict[tuple[int, int], bytes] = {}
        if not todo:
            return found
        with self._lock:
            assigned = [TopicPartition(self._topic, p, offsets[-1]) for p, offsets in todo.items()]
            self._consumer.assign(assigned)
            deadline = time.monotonic() + timeout
            try:
                while todo and time.monotonic() < deadline:
                    for msg in self._consumer.consume(1000, 0.05):
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                continue
                            raise KafkaUnavailable(str(err))
                        p, o = msg.partition() or 0, msg.offset() or 0
                        offsets = todo.get(p)
                        while offsets and offsets[-1] < o:  # skipped over: not in the log any more
                            offsets.pop()
                        if offsets and offsets[-1] == o:
                            found[(p, o)] = msg.value() or b""
                            offsets.pop()
                        if offsets is not None and not offsets:
                            del todo[p]
                            self._consumer.pause([TopicPartition(self._topic, p)])
            finally:
                self._consumer.resume(assigned)  # a pause outlives unassign(): the next pass would read nothing
                self._consumer.unassign()
        return found

    def close(self) -> None:
        self._consumer.close()


def ensure_topics(
    bootstrap: Bootstrap,
    specs: Iterable[TopicSpec[Any]],
    *,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    timeout: float = 30.0,
) -> None:
    """Create missing topics (`min_insync_replicas` set on each, None: the broker's default); refuse to run
    against a topic whose partition count differs. A cluster that refuses this client (TLS, SASL) fails at
    once, naming why."""
    refusals: list[KafkaError] = []
    try:
        admin = AdminClient(client_config(bootstrap, error_cb=refusals.append))
    except KafkaException as exc:  # e.g. a CA or key file librdkafka cannot read
        raise KafkaUnavailable(f"cannot create a Kafka client: {exc}") from exc
    servers = bootstrap.bootstrap if isinstance(bootstrap, Cluster) else bootstrap
    existing = _reachable(admin, servers, refusals, timeout)
    extra = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
    wanted = list(specs)
    missing = [s for s in wanted if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication_factor, config={**s.config(), **extra}) for s in missing],
            operation_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaUnavailable(f"creating {name}: {exc}") from exc
        existing = _await_metadata(admin, [s.name for s in missing], timeout)
        _await_leaders(admin, {s.name: existing[s.name] for s in missing}, timeout)
    for spec in wanted:
        have = len(existing[spec.name].partitions)
        if have != spec.partitions:
            raise KafkaUnavailable(f"topic {spec.name} has {have} partitions, mailstream needs {spec.partitions}")


# What librdkafka reports when the brokers refuse the client rather than not answering: retrying cannot help.
_REFUSED = (KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED)


def _reachable(admin: AdminClient, servers: str, refusals: list[KafkaError], timeout: float) -> dict[str, Any]:
    """The cluster's topics, asked until `timeout`; KafkaUnavailable at once if a broker refused the client."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            topics: dict[str, Any] = admin.list_topics(timeout=min(1.0, timeout)).topics
            return topics
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            refused = next((e for e in refusals if e.code() in _REFUSED), None)
            if refused is not None:
                raise KafkaUnavailable(f"Kafka refused this client ({refused.name()}): {refused.str()}") from exc
            if time.monotonic() > deadline:
                why = f" (last: {refusals[-1].str()})" if refusals else ""
                raise KafkaUnavailable(f"cannot reach Kafka at {servers}: {exc}{why}") from exc


def _await_metadata(admin: AdminClient, names: list[str], timeout: float) -> dict[str, Any]:
    """Topic metadata once every named topic shows up with a leader for each partition: creation returns before
    metadata propagates, and a client that asks a partition without a leader yet fails (NOT_LEADER_FOR_PARTITION)."""
    deadline = time.monotonic() + timeout
    while True:
        topics: dict[str, Any] = admin.list_topics(timeout=timeout).topics
        if all(_led(topics.get(n)) for n in names):
            return topics
        if time.monotonic() > deadline:
            raise KafkaUnavailable(f"topics {names} not visible in metadata after {timeout}s")
        time.sleep(0.1)


def _await_leaders(admin: AdminClient, topics: dict[str, Any], timeout: float) -> None:
    """Until each new partition's leader answers for it: metadata names a leader before that broker serves the
    partition, and a stage's first watermark query in that gap fails (NOT_LEADER_FOR_PARTITION) and ends it."""
    deadline = time.monotonic() + timeout
    pending = [TopicPartition(name, p) for name, topic in topics.items() for p in topic.partitions]
    while pending:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = admin.list_offsets({tp: latest for tp in pending}, request_timeout=timeout)
        failed = []
        for tp, future in futures.items():
            try:
                future.result()
            except KafkaException:
                failed.append(TopicPartition(tp.topic, tp.partition))
        pending = failed
        if pending and time.monotonic() > deadline:
            raise KafkaUnavailable(f"{len(pending)} new partitions not served after {timeout}s, e.g. {pending[0]}")
        if pending:
            time.sleep(0.2)


def _led(topic: Any) -> bool:
    return bool(topic is not None and topic.error is None and topic.partitions) and all(
        p.leader >= 0 for p in topic.partitions.values()
    )


class TopicTailer:
    """Reads every partition of a topic from given offsets, outside any consumer group.

    Read models (the transaction-status view) use it: each replica must see every record,
    and keeps its own offsets next to the state they produced.
    """

    def __init__(self, bootstrap: Bootstrap, topic: str, partitions: int, start: dict[int, int], **extra: Any) -> None:
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": f"mailstream-tail-{topic}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **BATCHED_FETCH,
                **extra,
            }
        )
        self._start = [TopicPartition(topic, p, start.get(p, -2)) for p in range(partitions)]  # -2: beginning
        self._consumer.assign(self._start)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tail-{topic}")

    async def poll_batch(self, max_records: int = 1000, timeout: float = 0.5) -> list[Message]:
        loop = asyncio.get_running_loop()
        msgs = await loop.run_in_executor(self._executor, consume_now, self._consumer, max_records, timeout)
        return [m for m in msgs if m.error() is None]

    async def end_offsets(self, timeout: float = 10.0) -> dict[int, int]:
        """Per partition, where the topic's committed records end now (the last stable offset: this consumer
        reads committed records only), for `reached`."""

        def ends() -> dict[int, int]:
            return {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=timeout)[1] for tp in self._start}

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, ends)
        except KafkaException as exc:
            raise KafkaUnavailable(str(exc)) from exc

    async def reached(self, ends: dict[int, int]) -> bool:
        """Whether reading has passed `ends` in every partition (transaction markers too): a read model caught
        up with what was written before `end_offsets` was asked. An empty poll does not say so: the first
        fetches may simply not have answered yet."""

        def positions() -> list[TopicPartition]:
            return list(self._consumer.position(self._start))

        at = await asyncio.get_running_loop().run_in_executor(self._executor, positions)
        started = {tp.partition: tp.offset for tp in self._start}
        return all(
            ends.get(tp.partition, 0) <= (tp.offset if tp.offset >= 0 else max(started[tp.partition], 0)) for tp in at
        )

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._consumer.close)
        self._executor.shutdown(wait=False)
