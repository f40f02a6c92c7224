"""Commit points of a worker that finishes tasks out of order."""

from __future__ import annotations

from mailstream.delivery.progress import Progress

TP = ("mail.delivery", 3)


def test_commit_point_stops_at_the_first_task_in_flight() -> None:
    progress = Progress()
    for offset in (10, 11, 12, 13):
        progress.started(TP, offset)
    progress.finished(TP, 11)
    progress.finished(TP, 13)
    assert progress.committable() == {TP: 10}
    progress.finished(TP, 10)
    assert progress.committable() == {TP: 12}
    assert progress.committable() == {}  # nothing moved
    progress.finished(TP, 12)
    assert progress.committable() == {TP: 14}
    assert progress.in_flight == 0


def test_partitions_are_independent_and_a_revoked_one_is_forgotten() -> None:
    progress, other = Progress(), ("mail.delivery", 4)
    progress.started(TP, 0)
    progress.started(other, 7)
    progress.finished(other, 7)
    assert progress.committable() == {TP: 0, other: 8}
    progress.forget(TP)
    progress.finished(TP, 0)  # finishing after the partition was taken away reports nothing
    assert progress.committable() == {}


def test_a_failed_commit_is_reported_again() -> None:
    progress = Progress()
    progress.started(TP, 5)
    progress.finished(TP, 5)
    moved = progress.committable()
    assert moved == {TP: 6}
    progress.not_committed(moved)
    assert progress.committable() == {TP: 6}
