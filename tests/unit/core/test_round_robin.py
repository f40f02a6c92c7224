"""LVS weighted round robin and the most-remaining choice."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.core.round_robin import WrrState, most_remaining, wrr_next


def _picks(
    weights: Sequence[int], n: int, state: WrrState | None = None, eligible: Callable[[int], bool] = lambda i: True
) -> tuple[list[int | None], WrrState]:
    state = state or WrrState()
    picked: list[int | None] = []
    for _ in range(n):
        index, state = wrr_next(weights, state, eligible)
        picked.append(index)
    return picked, state


@pytest.mark.parametrize(
    ("weights", "sequence"),
    [
        ([2, 1], [0, 0, 1, 0, 0, 1]),
        ([5, 3, 0, 2], [0, 0, 0, 1, 0, 1, 3, 0, 1, 3]),
        ([1, 1, 1], [0, 1, 2, 0, 1, 2]),
        ([3, 3], [0, 1, 0, 1]),
        ([0, 4], [1, 1, 1]),
        ([4, 2, 6], [2, 0, 2, 0, 1, 2]),  # gcd 2: levels 6, 4, 2
        ([7], [0, 0]),
    ],
)
def test_sequences(weights: list[int], sequence: list[int]) -> None:
    assert _picks(weights, len(sequence))[0] == sequence


def test_counts_are_proportional_over_a_cycle() -> None:
    assert Counter(_picks([2, 1], 3)[0]) == {0: 2, 1: 1}
    assert Counter(_picks([5, 3, 0, 2], 10)[0]) == {0: 5, 1: 3, 3: 2}
    assert Counter(_picks([5, 3, 0, 2], 30)[0]) == {0: 15, 1: 9, 3: 6}


def test_state_after_each_pick() -> None:
    index, state = wrr_next([2, 1], WrrState())
    assert (index, state) == (0, WrrState(0, 2))
    index, state = wrr_next([2, 1], state)
    assert (index, state) == (0, WrrState(0, 1))
    index, state = wrr_next([2, 1], state)
    assert (index, state) == (1, WrrState(1, 1))


@pytest.mark.parametrize("weights", [[], [0], [0, 0, 0]])
def test_nothing_to_pick(weights: list[int]) -> None:
    state = WrrState(1, 3)
    index, after = wrr_next(weights, state)
    assert index is None
    assert after is state


def test_ineligible_entries_are_passed_over() -> None:
    assert _picks([2, 1], 4, eligible=lambda i: i != 0)[0] == [1, 1, 1, 1]
    assert _picks([5, 3, 0, 2], 7, eligible=lambda i: i != 1)[0] == [0, 0, 0, 0, 3, 0, 3]
    assert _picks([1, 1, 1], 4, eligible=lambda i: i != 1)[0] == [0, 2, 0, 2]
    state = WrrState(0, 2)
    assert wrr_next([2, 1], state, lambda i: False) == (None, state)
    assert wrr_next([2, 0], state, lambda i: i == 1) == (None, state)


def test_a_state_from_other_weights_is_accepted() -> None:
    assert wrr_next([1, 1], WrrState(7, 100)) == (0, WrrState(0, 1))
    assert wrr_next([3, 1], WrrState(0, 50)) == (0, WrrState(0, 2))  # clamped to the top level (3), carries on
    assert _picks([3, 1], 4, WrrState(-5, 2))[0] == [0, 1, 0, 0]  # index reset, level 2 carried on


def test_negative_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        wrr_next([1, -1], WrrState())


weight_lists = st.lists(st.integers(0, 12), min_size=1, max_size=6).filter(any)


@given(weight_lists, st.integers(0, 40))
def test_every_cycle_is_exactly_proportional(weights: list[int], warmup: int) -> None:
    step = math.gcd(*weights)
    cycle = sum(weights) // step
    _, state = _picks(weights, warmup)
    picked, _ = _picks(weights, cycle, state)
    assert Counter(picked) == {i: w // step for i, w in enumerate(weights) if w}


@given(weight_lists, st.lists(st.booleans(), min_size=6, max_size=6))
def test_picks_only_eligible_positive_entries(weights: list[int], mask: list[bool]) -> None:
    eligible = [w if mask[i] else 0 for i, w in enumerate(weights)]
    if not any(eligible):
        assert _picks(weights, 3, eligible=lambda i: mask[i])[0] == [None] * 3
        return
    # The eligible entries still share in proportion to their weights over a cycle of the weight levels.
    step = math.gcd(*weights)
    picked, _ = _picks(weights, sum(eligible) // step, eligible=lambda i: mask[i])
    assert Counter(picked) == {i: w // step for i, w in enumerate(eligible) if w}


@pytest.mark.parametrize(
    ("remaining", "mask", "best"),
    [
        ([3, None, 5], None, 1),
        ([3, 5, 5], None, 1),
        ([None, None], None, 0),
        ([3, None, 5], [True, False, True], 2),
        ([0, 0], None, None),
        ([-1, 2], None, 1),
        ([0, None], [True, False], None),
        ([], None, None),
        ([4, 9], [False, False], None),
        ([2, 1], None, 0),
    ],
)
def test_most_remaining(remaining: list[int | None], mask: list[bool] | None, best: int | None) -> None:
    if mask is None:
        assert most_remaining(remaining) == best
    else:
        assert most_remaining(remaining, lambda i: mask[i]) == best
