"""A transactional call that never returns (librdkafka#5456) is given up after its deadline, not waited for."""

from __future__ import annotations

import threading

import pytest

from mailstream.events.processor.transaction import TransactionStuck, bounded


def test_a_call_that_does_not_return_is_given_up_at_its_deadline() -> None:
    release = threading.Event()

    def hang() -> None:
        release.wait()

    try:
        with pytest.raises(TransactionStuck):
            bounded(hang, 0.05)
    finally:
        release.set()


def test_a_call_that_fails_raises_its_own_error_in_the_caller() -> None:
    def fail() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        bounded(fail, 5.0)


def test_a_call_that_returns_in_time_is_waited_for() -> None:
    seen: list[int] = []
    bounded(lambda: seen.append(1), 5.0)
    assert seen == [1]
