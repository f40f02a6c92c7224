"""Message bodies are written to Kafka exactly once; everything downstream carries a BodyRef."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaError, Message, Producer

from mailstream.events.kafka import Bootstrap, KafkaUnavailable, OffsetReader
from mailstream.events.producer import EventSink
from mailstream.events.records import BodyRef, MessageBody
from mailstream.events.serde import SerdeError, decode, encode
from mailstream.events.topics import BODIES


class BodyCorrupt(RuntimeError):
    """The bytes read back do not hash to the reference's sha256."""


async def put_body(producer: EventSink, data: bytes) -> BodyRef:
    digest = hashlib.sha256(data).hexdigest()
    where = await producer.send_raw(BODIES.name, digest.encode(), encode(MessageBody(sha256=digest, data=data)))
    return BodyRef(topic=where.topic, partition=where.partition, offset=where.offset, sha256=digest, size=len(data))


def put_body_blocking(producer: Producer, data: bytes, timeout: float = 30.0) -> BodyRef:
    """put_body for a caller on a thread of its own (a stage's handler): waits for the acknowledgement."""
    digest = hashlib.sha256(data).hexdigest()
    delivered: list[Message] = []
    failed: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        (failed.append(err) if err is not None else delivered.append(msg))

    producer.produce(
        BODIES.name, encode(MessageBody(sha256=digest, data=data)), digest.encode(), on_delivery=on_delivery
    )
    producer.flush(timeout)
    if failed or not delivered:
        raise KafkaUnavailable(f"body not written: {failed[0] if failed else 'no acknowledgement in time'}")
    msg = delivered[0]
    return BodyRef(
        topic=BODIES.name, partition=msg.partition() or 0, offset=msg.offset() or 0, sha256=digest, size=len(data)
    )


Waiters = dict[tuple[int, int], list[tuple[BodyRef, "asyncio.Future[bytes]"]]]


class BodyReader:
    """Fetches bodies by reference, many per pass, with an LRU bounded in bytes.

    Every read asked for while a pass runs joins the next one, so a batch of tasks costs one
    forward read per bodies partition instead of one fetch per message. A pass reads at most
    `max_span` offsets of a partition; wanted offsets further on wait for the next pass.
    """

    def __init__(
        self, bootstrap: Bootstrap, cache_bytes: int = 64 * 1024 * 1024, max_span: int = 5000, timeout: float = 10.0
    ) -> None:
        self._reader = OffsetReader(bootstrap, BODIES.name)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="body-reader")
        self._pending: Waiters = {}
        self._pass: asyncio.Task[None] | None = None
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._cache_limit = cache_bytes
        self._max_span = max_span
        self._timeout = timeout

    async def get(self, ref: BodyRef) -> bytes:
        cached = self._cache.get(ref.sha256)
        if cached is not None:
            self._cache.move_to_end(ref.sha256)
            return cached
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.setdefault((ref.partition, ref.offset), []).append((ref, waiter))
        if self._pass is None:
            self._pass = asyncio.create_task(self._passes(), name="body reads")
        return await waiter

    async def _passes(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                taken = self._take()
                wanted: dict[int, set[int]] = {}
                for partition, offset in taken:
                    wanted.setdefault(partition, set()).add(offset)
                try:
                    found = await loop.run_in_executor(self._executor, self._reader.read_many, wanted, self._timeout)
                except KafkaUnavailable as exc:
                    for waiters in taken.values():
                        for _, waiter in waiters:
                            _fail(waiter, exc)
                    continue
                for (partition, offset), waiters in taken.items():
                    raw = found.get((partition, offset))
                    for ref, waiter in waiters:
                        if raw is None:
                            _fail(
                                waiter,
                                KafkaUnavailable(
                                    f"{ref.topic}[{partition}]@{offset} not readable within {self._timeout}s"
                                ),
                            )
                        else:
                            self._settle(ref, raw, waiter)
        finally:
            self._pass = None

    def _take(self) -> Waiters:
        """The pending reads of this pass: per partition, those within max_span of its lowest offset."""
        lowest: dict[int, int] = {}
        for partition, offset in self._pending:
            lowest[partition] = min(offset, lowest.get(partition, offset))
        taken = {key: waiters for key, waiters in self._pending.items() if key[1] - lowest[key[0]] < self._max_span}
        for key in taken:
            del self._pending[key]
        return taken

    def _settle(self, ref: BodyRef, raw: bytes, waiter: asyncio.Future[bytes]) -> None:
        try:
            body = decode(raw, MessageBody)
        except SerdeError as exc:
            _fail(waiter, exc)
            return
        if body.sha256 != ref.sha256 or hashlib.sha256(body.data).hexdigest() != ref.sha256:
            _fail(waiter, BodyCorrupt(f"body at {ref.topic}[{ref.partition}]@{ref.offset} does not match {ref.sha256}"))
            return
        if ref.sha256 not in self._cache:
            self._cache[ref.sha256] = body.data
            self._cached_bytes += len(body.data)
            while self._cached_bytes > self._cache_limit and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= len(dropped)
        if not waiter.done():
            waiter.set_result(body.data)

    def close(self) -> None:
        self._reader.close()
        self._executor.shutdown(wait=False)


def _fail(waiter: asyncio.Future[bytes], exc: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(exc)
