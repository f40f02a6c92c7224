"""Which waiting message goes next: strict priority, then round robin across lanes (scheduled queues).

A small lane is never stuck behind a large one of the same priority (KumoMTA issue #321: small
urgent queues starved behind bulk), and a higher priority always goes first. A lane whose head
cannot go (its tenant is over its rate, its window is closed) is parked until an instant, so
blocked lanes cost nothing until they wake.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from datetime import datetime


class FairQueue:
    def __init__(self) -> None:
        self._lanes: dict[str, dict[int, deque[str]]] = {}
        self._rotation: dict[int, OrderedDict[str, None]] = {}
        self._parked: dict[str, datetime] = {}
        self._wakeups: list[tuple[datetime, str]] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, lane: str, priority: int, item: str, *, front: bool = False) -> None:
        items = self._lanes.setdefault(lane, {}).setdefault(priority, deque())
        if front:
            items.appendleft(item)
        else:
            items.append(item)
        self._size += 1
        if lane not in self._parked:
            self._rotation.setdefault(priority, OrderedDict()).setdefault(lane, None)

    def pop(self) -> tuple[str, int, str] | None:
        """(lane, priority, item) of the next item, or None when every lane is empty or parked."""
        for priority in sorted(self._rotation, reverse=True):
            ring = self._rotation[priority]
            if not ring:
                del self._rotation[priority]
                continue
            lane, _ = ring.popitem(last=False)
            items = self._lanes[lane][priority]
            item = items.popleft()
            self._size -= 1
            if items:
                ring[lane] = None  # to the back of the ring: the other lanes go first
            else:
                del self._lanes[lane][priority]
                if not self._lanes[lane]:
                    del self._lanes[lane]
            return lane, priority, item
        return None

    def park(self, lane: str, until: datetime) -> None:
        """Take a lane out of rotation until `until` (its items stay, in order)."""
        self._parked[lane] = until
        heapq.heappush(self._wakeups, (until, lane))
        for ring in self._rotation.values():
            ring.pop(lane, None)

    def wake(self, now: datetime) -> None:
        """Put lanes whose time has come back into rotation."""
        while self._wakeups and self._wakeups[0][0] <= now:
            until, lane = heapq.heappop(self._wakeups)
            if self._parked.get(lane) != until:
                continue  # re-parked later, or already woken
            del self._parked[lane]
            for priority in self._lanes.get(lane, {}):
                self._rotation.setdefault(priority, OrderedDict())[lane] = None
