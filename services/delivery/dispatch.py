"""Per egress path dispatchers: each owns one SMTP connection and sends the path's messages over it in turn.

As KumoMTA's ready queue: a path's messages wait in its queue; a dispatcher opens a connection when
more messages wait than idle dispatchers can take, within the path's connection shaping
(`mailstream.core.path_connections`), and sends message after message on it until the queue is
empty for `idle_timeout`, the connection has carried `max_deliveries_per_connection`, or another
path waits for a connection slot. A global gate bounds the open connections of the worker.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from mailstream.core.clock import Clock
from mailstream.core.path_connections import ConnectionShape, PathConnections
from mailstream.delivery.smtp_client import SmtpAttempt, SmtpSession

Connector = Callable[[], Awaitable[SmtpSession | SmtpAttempt]]
Sleep = Callable[[float], Awaitable[None]]  # asyncio.sleep; tests pass one that moves their clock instead


class Gate:
    """Connection slots shared by every path; an idle connection gives its slot up when a path waits."""

    def __init__(self, slots: int, path_share: float = 0.5) -> None:
        self.slots = slots
        # A path without a connection_limit may hold at most this share of the slots, so one slow
        # destination (a tarpit holding a slot per message for minutes) leaves the others connections.
        self.path_slots = max(1, int(slots * path_share))
        self._free = asyncio.Semaphore(slots)
        self.waiting = 0
        self._idle: dict[asyncio.Future[bool], None] = {}  # insertion-ordered: the longest idle goes first

    async def acquire(self) -> None:
        if self._free.locked():
            oldest = next((w for w in self._idle if not w.done()), None)
            if oldest is not None:
                oldest.set_result(False)
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._free.release()

    def idle(self, waiter: asyncio.Future[bool]) -> None:
        self._idle[waiter] = None

    def busy(self, waiter: asyncio.Future[bool]) -> None:
        self._idle.pop(waiter, None)


@dataclass(eq=False, slots=True)
class Job:
    sender: str
    recipient: str
    data: bytes
    deadline: float | None  # the event loop's time by which its attempt must end
    done: asyncio.Future[SmtpAttempt] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    started: bool = False  # a dispatcher has begun sending it: it can no longer be withdrawn
    withdrawn: bool = False

    def finish(self, attempt: SmtpAttempt) -> None:
        if not self.done.done():
            self.done.set_result(attempt)


class PathDispatcher:
    def __init__(
        self,
        path: str,
        shape: ConnectionShape,
        connect: Connector,
        gate: Gate,
        clock: Clock,
        idle_timeout: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.path = path
        self.base = shape  # as configured; `shape` may be narrowed for a while by adaptive shaping
        self.shape = shape
        self._ledger = PathConnections(shape)
        self._connect = connect
        self._gate = gate
        self._clock = clock
        self._sleep = sleep  # waits for the connection rate, in the clock's time
        self._idle_timeout = idle_timeout
        self._jobs: deque[Job] = deque()
        self._idlers: deque[asyncio.Future[bool]] = deque()  # True: a job arrived; False: give the slot up
        self._starting = 0
        self._woken = 0  # idlers told a job arrived that have not resumed yet
        self._running: set[asyncio.Task[None]] = set()

    async def deliver(
        self, sender: str, recipient: str, data: bytes, wait: float, deadline: float | None = None
    ) -> SmtpAttempt | None:
        """Send one message on this path, ended by `deadline` (the event loop's time) once sending began; None
        if no connection could take it within `wait` seconds."""
        job = Job(sender, recipient, data, deadline)
        self._jobs.append(job)
        self._wake_one()
        self._spawn()
        try:
            return await asyncio.wait_for(asyncio.shield(job.done), wait)
        except TimeoutError:
            if job.started:
                return await job.done
            job.withdrawn = True
            return None

    def reshape(self, shape: ConnectionShape) -> None:
        """Shape the path anew (adaptive shaping narrowed or restored its connection limit): connections over a
        lower limit close after their current message, a higher one lets more open at once."""
        self.shape = self._ledger.shape = shape
        self._spawn()

    @property
    def open_connections(self) -> int:
        return self._ledger.open

    def dormant(self, now: datetime) -> bool:
        """Nothing queued or open and the connection rate fully recovered: forgetting the path loses nothing."""
        tat = self._ledger.gcra.tat
        return not self._jobs and not self._running and (tat is None or tat <= now)

    def _waiting_jobs(self) -> int:
        return sum(not j.withdrawn for j in self._jobs)

    def _wake_one(self) -> None:
        while self._idlers:
            idler = self._idlers.popleft()
            if not idler.done():
                idler.set_result(True)
                self._woken += 1
                return

    def _spawn(self) -> None:
        """Start dispatchers for the jobs no idle or starting one will take, up to what the shape allows."""
        cap = min(self.shape.limit or self._gate.path_slots, self._gate.slots)
        uncovered = self._waiting_jobs() - len(self._idlers) - self._woken - self._starting
        while uncovered > 0 and self._ledger.open + self._starting < cap:
            self._starting += 1
            uncovered -= 1
            task = asyncio.create_task(self._dispatch(), name=f"dispatch {self.path}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self) -> None:
        try:
            session = await self._open()
        finally:
            self._starting -= 1
        if session is None:
            self._spawn()
            return
        try:
            await self._serve(session)
        finally:
            await session.close()
            self._ledger.closed()
            self._gate.release()
            self._spawn()

    async def _open(self) -> SmtpSession | None:
        """A connection once the gate and the path's limit and rate all allow one; None if no job needs it."""
        while True:
            if not self._waiting_jobs():
                return None
            await self._gate.acquire()
            now = self._clock()
            if self._ledger.try_open(now):
                break
            self._gate.release()
            at = self._ledger.next_open_at(now)
            if at is None:  # the limit is reached: a closing dispatcher will spawn again
                return None
            await self._sleep((at - now).total_seconds())
        opened = await self._connect()
        if isinstance(opened, SmtpSession):
            return opened
        self._ledger.closed()
        self._gate.release()
        job = self._take()
        if job is not None:  # the failed connection answers one message; the others try again
            job.finish(opened)
        return None

    async def _serve(self, session: SmtpSession) -> None:
        while session.connected and not self.shape.retired(session.deliveries) and not self._over_limit():
            job = await self._next(session)
            if job is None:
                return
            job.started = True
            attempt = await session.send(job.sender, job.recipient, job.data, job.deadline)
            if attempt.resend:
                job.started = False
                self._jobs.appendleft(job)
                return
            job.finish(attempt)

    def _over_limit(self) -> bool:
        limit = self.shape.limit
        return limit is not None and self._ledger.open > limit

    def _take(self) -> Job | None:
        while self._jobs:
            job = self._jobs.popleft()
            if not job.withdrawn:
                return job
        return None

    async def _next(self, session: SmtpSession) -> Job | None:
        """The next job, waiting up to idle_timeout for one; None to close the connection."""
        while True:
            job = self._take()
            if job is not None:
                return job
            if self._gate.waiting or not session.connected:
                return None
            idler = asyncio.get_running_loop().create_future()
            self._idlers.append(idler)
            self._gate.idle(idler)
            try:
                if not await asyncio.wait_for(idler, self._idle_timeout):
                    return None
            except TimeoutError:
                return None
            finally:
                self._gate.busy(idler)
                if idler in self._idlers:
                    self._idlers.remove(idler)
                elif idler.done() and not idler.cancelled() and idler.result():
                    self._woken -= 1

    async def close(self, grace: float = 10.0) -> None:
        """Close idle connections now, give busy ones `grace` seconds to finish, then cancel what is left."""
        for idler in self._idlers:
            if not idler.done():
                idler.set_result(False)
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
