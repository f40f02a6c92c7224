"""Waiting for something a component does on its own (a session ending, a record landing), by condition, not by
sleeping a guessed time: polled every 10 ms, failing with `what` after `timeout` seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], what: str = "condition not met in time", timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)
