"""Worker processes that render templates which are not plain (`templates.is_plain`), so no template can hold
ingest's event loop, its memory or its CPU for longer than the bounds say.

Each worker is a spawned process (never forked from one running Kafka client threads) with an address-space
limit; it renders a request's recipients one by one and sends each result as soon as it has it, so the parent
knows which recipient a worker was on if it has to be killed. The request's rendering time is bounded twice:
inside the worker by an interval timer (which interrupts Python code, such as loops over `range`), and by the
parent, which kills a worker that has not answered by the budget and a second's grace (a single C call, which no
signal interrupts) and starts another.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from mailstream.ingest.templates import ExpansionTooLarge, GuardedEnvironment, render_all

GRACE_S = 1.0
_CONTEXT = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class RenderJob:
    sources: Mapping[str, str]  # path in the request -> template source
    variables: Sequence[Mapping[str, Any] | None]  # per recipient; None: skip (its address already failed)
    budget_s: float  # for the whole request
    output_limit: int  # characters per template output
    total_limit: int  # characters of every output together


class TemplateRefused(Exception):
    """A request whose templates passed a bound that only killing their worker could enforce (time, memory);
    the text names the recipient rendering was on."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"recipients[{index}]: {reason}")
        self.field = f"recipients[{index}]"
        self.reason = reason


def out_of_time(index: int, budget_s: float) -> TemplateRefused:
    return TemplateRefused(index, f"the request's templates took longer than {budget_s:g} s to render")


class _Alarm(BaseException):
    """Raised by the worker's timer; a BaseException so that no `except Exception` in rendering takes it."""


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _Alarm


def serve(conn: Connection, memory_limit: int) -> None:
    """A worker's life: jobs in, one message per recipient out (a dict, an error text, or None when skipped),
    then ("timeout", index) or ("done",)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    signal.signal(signal.SIGALRM, _on_alarm)
    while True:
        try:
            job: RenderJob = conn.recv()
        except EOFError:  # the parent is gone
            return
        env = GuardedEnvironment(job.output_limit)
        deadline = time.monotonic() + job.budget_s
        templates = {path: env.from_string(source) for path, source in job.sources.items()}
        for index, variables in enumerate(job.variables):
            if variables is None:
                conn.send(None)
                continue
            try:
                signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3))
                result = render_all(templates, variables, job.output_limit)
            except _Alarm:
                conn.send(("timeout", index))
                break
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            conn.send(result)
        else:
            conn.send(("done",))


class RenderPool:
    """Up to `size` workers, started when first needed; a job waits for a free one."""

    def __init__(self, size: int, memory_limit: int) -> None:
        self._memory_limit = memory_limit
        self._idle: asyncio.Queue[_Worker] | None = None
        self._size = size
        self._all: list[_Worker] = []

    async def render(self, job: RenderJob) -> list[dict[str, str] | str | None]:
        """Per recipient: the rendered templates, an error text naming the template, or None (skipped).
        TemplateRefused when the request's budget ran out or its worker died of it."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self._size):
                self._idle.put_nowait(_Worker(self._memory_limit))
        worker = await self._idle.get()
        running = asyncio.ensure_future(asyncio.to_thread(worker.run, job))
        # Given back when its thread is done, not when the caller stops waiting (a request past its deadline):
        # until then the worker is still answering this job.
        running.add_done_callback(lambda done: self._give_back(worker, done))
        return await asyncio.shield(running)

    def _give_back(self, worker: _Worker, done: asyncio.Future[list[dict[str, str] | str | None]]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: the caller may have stopped waiting
        if not worker.alive():
            worker.close()
            worker = _Worker(self._memory_limit)
        assert self._idle is not None
        self._idle.put_nowait(worker)

    def close(self) -> None:
        if self._idle is None:
            return
        while not self._idle.empty():
            self._idle.get_nowait().close()


class _Worker:
    def __init__(self, memory_limit: int) -> None:
        self._conn, child = _CONTEXT.Pipe()
        self._proc: BaseProcess = _CONTEXT.Process(
            target=serve, args=(child, memory_limit), daemon=True, name="template-worker"
        )
        self._proc.start()
        child.close()

    def alive(self) -> bool:
        return self._proc.is_alive()

    def run(self, job: RenderJob) -> list[dict[str, str] | str | None]:
        """On a thread of its own: send the job, collect one answer per recipient, kill the worker if it
        overruns (the pool then starts another)."""
        deadline = time.monotonic() + job.budget_s + GRACE_S
        results: list[dict[str, str] | str | None] = []
        total = 0
        try:
            self._conn.send(job)
            while True:
                if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                    self._kill()
                    raise out_of_time(len(results), job.budget_s)
                message = self._conn.recv()
                if isinstance(message, tuple):
                    if message[0] == "timeout":
                        raise out_of_time(message[1], job.budget_s)
                    return results
                results.append(message)
                if isinstance(message, dict):
                    total += sum(len(text) for text in message.values())
                    if total > job.total_limit:
                        self._kill()
                        raise ExpansionTooLarge(
                            f"the request's templates render to more than {job.total_limit} "
                            f"characters (at recipients[{len(results) - 1}]); send fewer "
                            "recipients per request"
                        )
        except (EOFError, OSError):  # it died (out of memory where even an error could not be sent)
            self._kill()
            raise TemplateRefused(
                len(results), "rendering its templates needed more memory than they may use"
            ) from None

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.join(5)

    def close(self) -> None:
        self._kill()
        self._conn.close()
