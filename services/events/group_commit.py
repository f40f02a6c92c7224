"""Record sets written all or nothing, many callers' sets sharing one Kafka transaction (group commit).

A transactional producer runs one transaction at a time, so a transaction per request would serialize every
request behind the last one's commit. Instead each caller hands over its set and waits; a single loop takes
every set waiting when the previous commit returns, writes them in one transaction and answers them all. Each set
is therefore inside exactly one transaction: committed whole, or (aborted) invisible to every read_committed
consumer (librdkafka's default, so every consumer in mailstream).

The transactional id is stable per writer (per ingest replica), so a replica restarted after a crash fences its
predecessor and aborts the transaction it left open at once, instead of every read_committed reader of those
partitions waiting out `transaction.timeout.ms` behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from mailstream.events.kafka import Bootstrap, KafkaUnavailable, producer_config
from mailstream.observability.logs import get_logger

Write = tuple[str, bytes, bytes]  # (topic, key, value)
log = get_logger(__name__)


class OutcomeUnknown(KafkaUnavailable):
    """The caller's time ran out while its transaction was being committed: it may yet commit or abort.
    `outcome` resolves (None, or KafkaUnavailable) once the writer knows."""

    def __init__(self, message: str, outcome: asyncio.Future[None]) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(slots=True)
class _Pending:
    records: Sequence[Write]
    done: asyncio.Future[None]
    taken: bool = field(default=False)


class TransactionalWriter:
    """`lanes` transactional producers (ids `<transactional_id>-<n>`) take the waiting sets in turn, so a new
    transaction begins while the last one's commit is still on its way."""

    def __init__(
        self,
        bootstrap: Bootstrap,
        transactional_id: str,
        *,
        lanes: int = 2,
        transaction_timeout_s: float = 30.0,
        **extra: Any,
    ) -> None:
        self._lanes = [
            _Lane(
                producer_config(
                    bootstrap,
                    **{
                        "transactional.id": f"{transactional_id}-{n}",
                        "transaction.timeout.ms": int(transaction_timeout_s * 1000),
                        "retry.backoff.ms": 20,  # the next transaction often meets CONCURRENT_TRANSACTIONS for a moment
                        "linger.ms": 1,  # a transaction is one batch: commit flushes it, lingering only adds latency
                        **extra,
                    },
                ),
                transaction_timeout_s,
            )
            for n in range(lanes)
        ]
        self._pending: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.transactions = 0  # committed, for tests and metrics

    def start(self) -> None:
        """Start the lanes: each opens its producer at once, which aborts what a predecessor under the same id
        left open (else its readers would wait for it until the transaction timeout). `write` starts them too."""
        if not self._tasks:
            self._wake = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._run(lane), name=f"transactional writer {n}")
                for n, lane in enumerate(self._lanes)
            ]

    async def write(self, records: Sequence[Write], *, timeout: float) -> None:
        """Returns once `records` are committed. KafkaUnavailable when none of them was (aborted, or not begun
        within `timeout`); OutcomeUnknown when `timeout` passed during their transaction's commit."""
        self.start()
        assert self._wake is not None
        pending = _Pending(records, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), timeout)
        except TimeoutError:
            if not pending.taken:
                self._pending.remove(pending)
                raise KafkaUnavailable(f"the event log took no write within {timeout:g} s") from None
            raise OutcomeUnknown(f"the write's commit did not finish within {timeout:g} s", pending.done) from None

    async def _run(self, lane: _Lane) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(KafkaUnavailable):  # the cluster is away: the first write tries again
            await _on_daemon_thread(loop, lane.ready)
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            batch, self._pending = self._pending, []
            for pending in batch:
                pending.taken = True
            records = [r for p in batch for r in p.records]
            try:
                await _on_daemon_thread(loop, functools.partial(lane.transact, records))
            except KafkaUnavailable as exc:
                for pending in batch:
                    _settle(pending.done, exc)
            else:
                self.transactions += 1
                for pending in batch:
                    _settle(pending.done, None)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in self._lanes:
            lane.discard()


class _Lane:
    """One transactional producer, used from one daemon thread at a time."""

    def __init__(self, config: dict[str, Any], timeout_s: float) -> None:
        self._config, self._timeout_s = config, timeout_s
        self._producer: Producer | None = None

    def transact(self, records: Sequence[Write]) -> None:
        """One transaction holding `records`; KafkaUnavailable if it did not commit."""
        producer = self.ready()
        try:
            producer.begin_transaction()
            for topic, key, value in records:
                self._produce(producer, topic, key, value)
            producer.commit_transaction(self._timeout_s)
        except (KafkaException, BufferError) as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            detail = err.str() if err is not None else str(exc)
            try:
                producer.abort_transaction(self._timeout_s)
            except KafkaException as abort_exc:
                # Not known to be aborted: a new producer under the same id fences this one, and its
                # init_transactions finishes (aborts) what this one left open.
                log.warning("transaction_abort_failed", error=str(abort_exc))
                self.discard()
            if err is not None and err.fatal():
                self.discard()
            raise KafkaUnavailable(f"transaction aborted: {detail}") from exc

    def _produce(self, producer: Producer, topic: str, key: bytes, value: bytes) -> None:
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise
                producer.poll(0.05)

    def ready(self) -> Producer:
        if self._producer is None:
            producer = Producer(self._config)
            try:
                producer.init_transactions(self._timeout_s)
            except KafkaException as exc:
                raise KafkaUnavailable(f"cannot begin transactions: {exc}") from exc
            self._producer = producer
        return self._producer

    def discard(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(0)
            self._producer = None


def _on_daemon_thread(loop: asyncio.AbstractEventLoop, call: Callable[[], object]) -> asyncio.Future[None]:
    """`call` on a daemon thread: a commit stuck on a lost cluster must not keep the process from exiting, as
    an executor's worker thread (joined at exit) would."""
    future: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        try:
            call()
        except KafkaUnavailable as exc:
            loop.call_soon_threadsafe(_settle, future, exc)
        except Exception as exc:  # a bug, not the cluster: the callers must still be answered
            loop.call_soon_threadsafe(_settle, future, KafkaUnavailable(f"transaction failed: {exc!r}"))
        else:
            loop.call_soon_threadsafe(_settle, future, None)

    threading.Thread(target=run, name="ingest-transaction", daemon=True).start()
    return future


def _settle(future: asyncio.Future[None], error: KafkaUnavailable | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
        future.exception()  # retrieved here: a caller that stopped waiting must not leave it unretrieved
