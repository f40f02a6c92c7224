"""Which records of a partition a worker that finishes them out of order has done, as a checkpoint that
commits with the responses: the next offset (the first record still in flight) and, in the offset's
metadata, which records after it are done already.

A slow destination's task holds back only its partition's committed offset, never the records behind
it: they are sent and answered, and the metadata says so, so a worker that reads the partition again
from that offset (after a crash, or a rebalance) skips them instead of sending them twice.

The metadata is run lengths from the offset, in base 36, alternately held (in flight) and done:
"d1:2,5,1,40" means two held, five done, one held, forty done. It stays under the broker's limit
(offset.metadata.max.bytes, 4096 by default): beyond `MAX_METADATA` characters the last runs are left
out, and the records there count as not yet read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

Partition = tuple[str, int]  # (topic, partition)
MAX_METADATA = 3000
_PREFIX = "d1:"


@dataclass(slots=True)
class _Lane:
    in_flight: set[int] = field(default_factory=set)
    highest_seen: int = -1  # every offset up to it was read (or is recorded done) and not in flight: done
    unread: deque[int] = field(default_factory=deque)  # restored held offsets not read again yet, lowest first


class Progress:
    def __init__(self) -> None:
        self._lanes: dict[Partition, _Lane] = {}
        self.truncated = 0  # checkpoints that left runs out

    def restore(self, tp: Partition, offset: int, metadata: str) -> None:
        """The partition's committed checkpoint, before any of its records is read: held offsets are in
        flight again (they will be read and sent), done ones are skipped when read."""
        lane = self._lanes[tp] = _Lane(highest_seen=offset - 1)
        if offset < 0 or not metadata.startswith(_PREFIX):
            return
        at, held = offset, True
        for run in filter(None, metadata[len(_PREFIX) :].split(",")):
            length = int(run, 36)
            if held:
                lane.in_flight.update(range(at, at + length))
                lane.unread.extend(range(at, at + length))
            at += length
            held = not held
        lane.highest_seen = at - 1

    def take(self, tp: Partition, offset: int) -> bool:
        """A record was read: True if it is to be handled (now in flight), False if it is done already."""
        lane = self._lanes.setdefault(tp, _Lane())
        while lane.unread and lane.unread[0] <= offset:
            restored = lane.unread.popleft()
            if restored < offset:  # skipped over: no longer in the log (retention)
                lane.in_flight.discard(restored)
        if offset > lane.highest_seen:
            lane.in_flight.add(offset)
            lane.highest_seen = offset
            return True
        return offset in lane.in_flight

    def finished(self, tp: Partition, offset: int) -> None:
        lane = self._lanes.get(tp)
        if lane is not None:
            lane.in_flight.discard(offset)

    def forget(self, tp: Partition) -> None:
        """The partition was taken away: its checkpoint is the new owner's business."""
        self._lanes.pop(tp, None)

    def owns(self, tp: Partition) -> bool:
        return tp in self._lanes

    @property
    def in_flight(self) -> int:
        return sum(len(lane.in_flight) for lane in self._lanes.values())

    def checkpoint(self) -> dict[Partition, tuple[int, str]]:
        """(next offset, metadata) of every partition with a lane."""
        return {tp: self._checkpoint(lane) for tp, lane in self._lanes.items() if lane.highest_seen >= 0}

    def _checkpoint(self, lane: _Lane) -> tuple[int, str]:
        if not lane.in_flight:
            return lane.highest_seen + 1, ""
        held = sorted(lane.in_flight)
        return held[0], self._encode(held, lane.highest_seen)

    def _encode(self, held: list[int], highest: int) -> str:
        runs: list[int] = []
        i = 0
        while i < len(held):  # one held run, then the done run up to the next held offset
            j = i
            while j + 1 < len(held) and held[j + 1] == held[j] + 1:
                j += 1
            runs.append(held[j] - held[i] + 1)
            following = held[j + 1] if j + 1 < len(held) else highest + 1
            if following > held[j] + 1:
                runs.append(following - held[j] - 1)
            i = j + 1
        parts = [_base36(n) for n in runs]
        size, kept = len(_PREFIX) - 1, 0
        for part in parts:  # any prefix of the runs is a true checkpoint: what follows reads as never read
            if size + 1 + len(part) > MAX_METADATA:
                self.truncated += 1
                break
            size += 1 + len(part)
            kept += 1
        return _PREFIX + ",".join(parts[:kept])


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out
