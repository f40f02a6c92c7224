"""Message bodies are written to Kafka exactly once; everything downstream carries a BodyRef."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict

from mailstream.events.kafka import EventProducer, PartitionReader
from mailstream.events.records import BodyRef, MessageBody
from mailstream.events.serde import decode, encode
from mailstream.events.topics import BODIES


class BodyCorrupt(RuntimeError):
    """The bytes read back do not hash to the reference's sha256."""


async def put_body(producer: EventProducer, data: bytes) -> BodyRef:
    digest = hashlib.sha256(data).hexdigest()
    where = await producer.send_raw(BODIES.name, digest.encode(), encode(MessageBody(sha256=digest, data=data)))
    return BodyRef(topic=where.topic, partition=where.partition, offset=where.offset,
                   sha256=digest, size=len(data))


class BodyReader:
    """Fetches bodies by reference, with a small LRU: a campaign's recipients often share one body."""

    def __init__(self, bootstrap: str, cache_entries: int = 256, readers: int = 8) -> None:
        # Each reader serves one read at a time; a small pool lets concurrent attempts read in parallel.
        self._readers = [PartitionReader(bootstrap, BODIES.name) for _ in range(readers)]
        self._free: asyncio.Queue[PartitionReader] = asyncio.Queue()
        for reader in self._readers:
            self._free.put_nowait(reader)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._limit = cache_entries

    async def get(self, ref: BodyRef) -> bytes:
        cached = self._cache.get(ref.sha256)
        if cached is not None:
            self._cache.move_to_end(ref.sha256)
            return cached
        reader = await self._free.get()
        try:
            raw = await asyncio.to_thread(reader.read, ref.partition, ref.offset)
        finally:
            self._free.put_nowait(reader)
        body = decode(raw, MessageBody)
        if body.sha256 != ref.sha256 or hashlib.sha256(body.data).hexdigest() != ref.sha256:
            raise BodyCorrupt(f"body at {ref.topic}[{ref.partition}]@{ref.offset} does not match {ref.sha256}")
        self._cache[ref.sha256] = body.data
        if len(self._cache) > self._limit:
            self._cache.popitem(last=False)
        return body.data

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
