"""Which offsets a worker that finishes records out of order may commit: per partition, up to the
first record still in flight.

A slow destination's task holds back only its partition's commit point, never the records
behind it: they are sent, answered and remembered, and committed once it finishes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

Partition = tuple[str, int]  # (topic, partition)


@dataclass(slots=True)
class _Lane:
    in_flight: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)  # in-flight offsets, lowest first (lazily pruned)
    highest_seen: int = -1
    committed: int = -1  # next offset last reported as committable


class Progress:
    def __init__(self) -> None:
        self._lanes: dict[Partition, _Lane] = {}

    def started(self, tp: Partition, offset: int) -> None:
        lane = self._lanes.setdefault(tp, _Lane())
        lane.in_flight.add(offset)
        heapq.heappush(lane.heap, offset)
        lane.highest_seen = max(lane.highest_seen, offset)

    def finished(self, tp: Partition, offset: int) -> None:
        lane = self._lanes.get(tp)
        if lane is not None:
            lane.in_flight.discard(offset)

    def forget(self, tp: Partition) -> None:
        """The partition was taken away: its commit point is the new owner's business."""
        self._lanes.pop(tp, None)

    def not_committed(self, offsets: dict[Partition, int]) -> None:
        """A commit of `offsets` failed: report them again next time."""
        for tp in offsets:
            lane = self._lanes.get(tp)
            if lane is not None:
                lane.committed = -1

    @property
    def in_flight(self) -> int:
        return sum(len(lane.in_flight) for lane in self._lanes.values())

    def committable(self) -> dict[Partition, int]:
        """Next offsets to commit that moved since the last call: the lowest offset in flight, or one past
        the highest seen when nothing is."""
        moved: dict[Partition, int] = {}
        for tp, lane in self._lanes.items():
            while lane.heap and lane.heap[0] not in lane.in_flight:
                heapq.heappop(lane.heap)
            upto = lane.heap[0] if lane.heap else lane.highest_seen + 1
            if upto > lane.committed:
                lane.committed = upto
                moved[tp] = upto
        return moved
