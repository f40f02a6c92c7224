"""Checkpoints of a worker that finishes tasks out of order: the next offset stops at the first task in
flight, and the metadata records which tasks after it are done, so a worker that reads the partition again
skips exactly those."""

from __future__ import annotations

from mailstream.delivery.progress import MAX_METADATA, Progress

TP = ("mail.delivery", 3)


def _taken(progress: Progress, offsets: range | list[int]) -> list[int]:
    return [o for o in offsets if progress.take(TP, o)]


def test_the_offset_stops_at_the_first_task_in_flight_and_the_metadata_names_the_done_ones() -> None:
    progress = Progress()
    assert _taken(progress, range(10, 20)) == list(range(10, 20))
    for offset in (11, 12, 15, 16, 17, 19):
        progress.finished(TP, offset)
    offset, metadata = progress.checkpoint()[TP]
    assert offset == 10
    assert metadata == "d1:1,2,2,3,1,1"  # 10 held, 11-12 done, 13-14 held, 15-17 done, 18 held, 19 done
    for offset in (10, 13, 14, 18):
        progress.finished(TP, offset)
    assert progress.checkpoint() == {TP: (20, "")}
    assert progress.in_flight == 0


def test_a_restored_checkpoint_skips_what_was_done_and_hands_out_the_rest_again() -> None:
    before = Progress()
    _taken(before, range(10, 20))
    for offset in (11, 12, 15, 16, 17, 19):
        before.finished(TP, offset)
    after = Progress()
    after.restore(TP, *before.checkpoint()[TP])
    assert after.checkpoint() == before.checkpoint()  # nothing read yet: the same checkpoint
    assert _taken(after, range(10, 25)) == [10, 13, 14, 18, 20, 21, 22, 23, 24]
    assert after.in_flight == 9


def test_a_restored_record_that_is_gone_from_the_log_does_not_hold_the_offset() -> None:
    progress = Progress()
    progress.restore(TP, 10, "d1:2,3")  # 10, 11 held; 12-14 done
    assert progress.take(TP, 11)  # 10 was removed by retention
    progress.finished(TP, 11)
    assert progress.checkpoint() == {TP: (15, "")}


def test_nothing_committed_and_a_dropped_partition() -> None:
    progress, other = Progress(), ("mail.delivery", 4)
    progress.restore(TP, -1, "")
    assert progress.checkpoint() == {}
    assert progress.take(TP, 0)
    assert progress.take(other, 7)
    progress.finished(other, 7)
    assert progress.checkpoint() == {TP: (0, "d1:1"), other: (8, "")}
    progress.forget(TP)
    assert progress.checkpoint() == {other: (8, "")}
    assert not progress.owns(TP)
    progress.finished(TP, 0)  # a task of a partition taken away finishes: nothing to record


def test_a_read_twice_record_is_not_handed_out_again() -> None:
    progress = Progress()
    assert progress.take(TP, 5)
    progress.finished(TP, 5)
    assert not progress.take(TP, 5)


def test_metadata_too_long_leaves_the_last_runs_out_and_they_read_as_never_read() -> None:
    progress = Progress()
    _taken(progress, range(0, 20_000))
    for offset in range(1, 20_000, 2):  # every other one done: 20,000 runs
        progress.finished(TP, offset)
    offset, metadata = progress.checkpoint()[TP]
    assert offset == 0
    assert len(metadata) <= MAX_METADATA
    assert progress.truncated == 1
    again = Progress()
    again.restore(TP, offset, metadata)
    taken = _taken(again, range(0, 20_000))
    covered = [o for o in range(0, 20_000) if o not in taken]
    assert covered == list(range(1, covered[-1] + 1, 2))  # the done ones it still names are skipped
    assert taken[-1] == 19_999
