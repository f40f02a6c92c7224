"""One partition of one endpoint: its records in order per transaction, different transactions side by side.

A record starts once the earlier records of its key (the transaction id) are finished — delivered, given up
or not wanted — so a transaction's events reach the endpoint in the order they happened. Records of other
keys do not wait for it, up to `window` records past the oldest unfinished one: an event being retried for
hours holds back its own transaction, not the partition. Only the longest finished prefix is marked done, so
a commit never passes an unfinished record; what finished beyond it is sent again after a crash (at most
`window` records, the price of not waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from mailstream.events.kafka import Consumed

WINDOW = 64  # records in hand past the oldest unfinished one


class Lane:
    def __init__(
        self,
        partition: int,
        handle: Callable[[Consumed], Awaitable[None]],
        done: Callable[[Consumed], bool],
        window: int = WINDOW,
    ) -> None:
        self.partition = partition
        self.next_offset: int | None = None  # after the longest finished prefix
        self._handle, self._done, self._window = handle, done, window
        self._inbox: asyncio.Queue[Consumed] = asyncio.Queue()
        self._unfinished: deque[Consumed] = deque()  # in offset order, from the oldest not yet marked done
        self._finished: set[int] = set()  # offsets in _unfinished that are finished
        self._chains: dict[bytes | None, deque[Consumed]] = {}  # per key: the running record, then its successors
        self._advanced = asyncio.Event()
        self._workers: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        self.abandoned = False  # `done` was refused: the partition is no longer ours
        self._task = asyncio.create_task(self._run(), name=f"lane-{partition}")

    def put(self, record: Consumed) -> None:
        self._inbox.put_nowait(record)

    @property
    def backlog(self) -> int:
        """Records taken but not finished, and waiting to be taken."""
        return self._inbox.qsize() + len(self._unfinished)

    async def _run(self) -> None:
        while True:
            record = await self._inbox.get()
            while len(self._unfinished) >= self._window:
                self._advanced.clear()
                await self._advanced.wait()
            self._unfinished.append(record)
            chain = self._chains.get(record.key)
            if chain is not None:
                chain.append(record)  # its key's worker takes it after the ones before
                continue
            self._chains[record.key] = deque([record])
            worker = asyncio.create_task(self._work(record.key), name=f"lane-{self.partition}-key")
            self._workers.add(worker)
            worker.add_done_callback(self._ended)

    async def _work(self, key: bytes | None) -> None:
        chain = self._chains[key]
        while chain:
            record = chain[0]
            await self._handle(record)
            chain.popleft()
            if not self._finish(record):
                return
        del self._chains[key]  # no await since the last look: nothing was added meanwhile

    def _finish(self, record: Consumed) -> bool:
        """Mark what is now a finished prefix done; False when the partition is no longer ours."""
        self._finished.add(record.offset)
        last = None
        while self._unfinished and self._unfinished[0].offset in self._finished:
            last = self._unfinished.popleft()
            self._finished.discard(last.offset)
        if last is None:
            return True
        if not self._done(last):  # revoked meanwhile: the partition's new owner goes on from the last commit
            self.abandoned = True
            self._task.cancel()
            for worker in self._workers:
                worker.cancel()
            return False
        self.next_offset = last.offset + 1
        self._advanced.set()
        return True

    def _ended(self, worker: asyncio.Task[None]) -> None:
        self._workers.discard(worker)
        if not worker.cancelled() and worker.exception() is not None and self._error is None:
            self._error = worker.exception()

    async def stop(self) -> None:
        tasks = [self._task, *self._workers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def failed(self) -> BaseException | None:
        """A handler's exception (a bug, not a failed POST: those are handled); its record stays unfinished."""
        if self._error is not None:
            return self._error
        if self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None
