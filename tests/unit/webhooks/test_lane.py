"""A lane: in order per transaction, other transactions past a stuck one, done marked for the finished prefix only."""

from __future__ import annotations

import asyncio

from mailstream.events.kafka import Consumed
from mailstream.webhooks.lane import Lane
from tests.infra.until import until


def record(offset: int, key: str) -> Consumed:
    return Consumed("mail.events", 0, offset, key.encode(), b"")


class Endpoint:
    """Handles records, holding those of the keys in `stuck` until released."""

    def __init__(self, *stuck: str) -> None:
        self.stuck = {key: asyncio.Event() for key in stuck}
        self.started: list[int] = []
        self.handled: list[int] = []
        self.done: list[int] = []

    async def handle(self, r: Consumed) -> None:
        self.started.append(r.offset)
        gate = self.stuck.get((r.key or b"").decode())
        if gate is not None:
            await gate.wait()
        self.handled.append(r.offset)

    def mark(self, r: Consumed) -> bool:
        self.done.append(r.offset)
        return True


async def test_other_transactions_pass_a_stuck_one_and_the_commit_waits_for_it() -> None:
    endpoint = Endpoint("tx-a")
    lane = Lane(0, endpoint.handle, endpoint.mark)
    for offset, key in enumerate(["tx-b", "tx-a", "tx-b", "tx-c", "tx-a", "tx-c"]):
        lane.put(record(offset, key))
    await until(lambda: sorted(endpoint.handled) == [0, 2, 3, 5], "b and c past the stuck a")
    assert sorted(endpoint.started) == [0, 1, 2, 3, 5]  # a's second (4) waits for its first
    assert endpoint.done[-1] == 0  # nothing past the unfinished offset 1 is marked done
    assert lane.next_offset == 1
    assert lane.backlog == 5
    endpoint.stuck["tx-a"].set()
    await until(lambda: lane.next_offset == 6, "all done once a goes through")
    assert endpoint.handled[4:] == [1, 4]
    assert endpoint.done == sorted(endpoint.done)
    await lane.stop()


async def test_the_window_bounds_what_passes_a_stuck_record() -> None:
    endpoint = Endpoint("tx-a")
    lane = Lane(0, endpoint.handle, endpoint.mark, window=3)
    for offset, key in enumerate(["tx-a", "tx-b", "tx-c", "tx-d", "tx-e"]):
        lane.put(record(offset, key))
    await until(lambda: sorted(endpoint.handled) == [1, 2], "two past the stuck one")
    await asyncio.sleep(0.05)
    assert sorted(endpoint.started) == [0, 1, 2]  # the window is full: d waits
    endpoint.stuck["tx-a"].set()
    await until(lambda: lane.next_offset == 5, "the rest once it goes through")
    await lane.stop()


async def test_a_revoked_partition_stops_its_lane() -> None:
    endpoint = Endpoint("tx-a")
    lane = Lane(0, endpoint.handle, lambda r: False)  # the partition was taken away
    lane.put(record(0, "tx-b"))
    lane.put(record(1, "tx-a"))
    lane.put(record(2, "tx-c"))
    await until(lambda: endpoint.handled[:1] == [0], "the first")
    await asyncio.sleep(0.05)
    assert endpoint.handled == [0]  # done refused: the lane dropped the rest (the new owner sends them)
    assert lane.failed is None
    assert lane.abandoned  # the worker drops it when the revocation is told, and fails if it is not
    await lane.stop()


async def test_a_handler_bug_is_reported_and_its_record_stays_unfinished() -> None:
    async def broken(r: Consumed) -> None:
        raise RuntimeError("bug")

    done: list[int] = []

    def mark(r: Consumed) -> bool:
        done.append(r.offset)
        return True

    lane = Lane(0, broken, mark)
    lane.put(record(0, "tx-a"))
    await until(lambda: lane.failed is not None, "the failure")
    assert isinstance(lane.failed, RuntimeError)
    assert done == []
    await lane.stop()
